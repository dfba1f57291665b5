"""Vocabulary warm-up: vLLM compiles a vocabulary's grammar on the first request that uses it (33 s for
50,000 terms), so at start-up, off the request path, one tiny request per (vocabulary, style) schema makes
it compile and cache each one. Readiness (``/health``) reports each vocabulary as ``pending``, ``warmed`` or
``failed``; captions are served meanwhile (a request may just wait for the compile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.backends.vlm import CaptionSpec, VlmBackend
from gateway.errors import BackendBadResponse, BackendError
from gateway.styles import Style
from gateway.vocabularies import Vocabulary

log = logging.getLogger("gateway.warmup")
WarmState = Literal["pending", "warmed", "failed"]
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # the VLM may still be loading its weights when the gateway starts


@dataclass
class VocabularyWarmup:
    vlm: VlmBackend
    styles: Mapping[str, Style]
    vocabularies: Mapping[str, Vocabulary]
    states: dict[str, WarmState] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.states = dict.fromkeys(self.vocabularies, "pending")

    async def run(self) -> None:
        """Every vocabulary in turn, one schema per style (each style bounds keywords differently)."""
        for name, vocabulary in self.vocabularies.items():
            try:
                for style in self.styles.values():
                    await self._warm(CaptionSpec(style, vocabulary=vocabulary))
            except BackendBadResponse as exc:  # the server refused the schema: retrying will not help
                log.error("vocabulary %s could not be warmed: %s", name, exc.message)
                self.states[name], self.errors[name] = "failed", exc.message
                continue
            self.states[name] = "warmed"
            log.info("vocabulary %s warmed (%d terms)", name, len(vocabulary.terms))

    async def _warm(self, spec: CaptionSpec) -> None:
        attempt = 0
        while True:
            try:
                await self.vlm.warm(spec)
                return
            except BackendBadResponse:
                raise
            except BackendError as exc:  # unavailable or timed out: the server may still be loading
                # Pending for as long as the VLM is down: nothing is captioned then anyway.
                pause = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                attempt += 1
                log.info("vocabulary warm-up waits %.0f s for the VLM: %s", pause, exc.message)
                await asyncio.sleep(pause)
