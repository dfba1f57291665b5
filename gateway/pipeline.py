"""One caption, end to end: the image (S3, a URL, or bytes sent) -> preparation -> VLM -> optional enhancer.

Plain async Python with no HTTP in it, so the API, the batch command and a Ray actor call the same
``CaptionPipeline.caption``. It raises the typed errors of ``gateway.errors``; callers map them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from gateway.backends.enhancer import EnhancerBackend
from gateway.backends.vlm import CaptionSpec, VlmBackend, VlmCaption
from gateway.context import context_from
from gateway.errors import EnhancementFailed, ImageUrlForbidden
from gateway.grounding import AddedTerm
from gateway.imaging import ImagePreparer, PreparedImage
from gateway.metrics import GatewayMetrics
from gateway.probes import CachedProbe
from gateway.records import (
    AddedTermRecord,
    BrandRecord,
    CaptionParams,
    CaptionRecord,
    ContextRecord,
    ReasoningLevel,
)
from gateway.requests import CaptionRequest as CaptionRequest  # re-exported: callers import it from here
from gateway.requests import InputKind
from gateway.requests import caption_spec as caption_spec
from gateway.sources.held import HeldImage, Lease
from gateway.sources.images import ImageSources
from gateway.sources.s3 import S3Source
from gateway.sources.s3_uri import parse_s3_uri
from gateway.sources.url import UrlSource
from gateway.styles import (
    ALT_TEXT_MAX_CHARS,
    ALT_TEXT_STYLE,
    Style,
)
from gateway.vocabularies import Vocabulary


@dataclass
class StageTimings:
    """Milliseconds per stage; filled as the stages run, so a failed request still reports its timings."""

    ms: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = round((time.perf_counter() - start) * 1000, 2)


@dataclass(frozen=True)
class CaptionResult:
    s3_uri: str | None
    caption: str
    enhanced: bool
    vlm: VlmCaption
    image: PreparedImage
    etag: str | None  # S3's version; None for bytes and URLs, whose version is their SHA-256
    models: dict[str, str | None]
    usage: dict[str, dict[str, int]]
    style: str
    params: CaptionParams
    image_sha256: str
    image_url: str | None = None
    original_caption: str | None = None
    enhancement_error: str | None = None
    added_terms: list[AddedTerm] = field(default_factory=list)
    context_used: ContextRecord | None = None

    def record(self) -> CaptionRecord:
        """The result as it is served, written and stored (structured fields only in structured mode)."""
        vlm = self.vlm
        structured = vlm.structured
        return CaptionRecord(
            caption=self.caption,
            enhanced=self.enhanced,
            s3_uri=self.s3_uri,
            original_caption=self.original_caption,
            enhancement_error=self.enhancement_error,
            truncated=vlm.truncated,
            style=self.style,
            keywords=vlm.keywords if structured else None,
            visible_text=vlm.visible_text if structured else None,
            brands=[BrandRecord(name=b.name, evidence=b.evidence) for b in vlm.brands]
            if structured
            else None,
            colors=vlm.colors if structured else None,
            added_terms=(
                [AddedTermRecord(term=t.term, evidence=t.evidence) for t in self.added_terms]
                if self.enhanced and structured
                else None
            ),
            models=self.models,
            usage=self.usage,
            alt_text=self._alt_text(),
            headline=vlm.headline,
            keywords_free=vlm.keywords_free,
            context_used=self.context_used,
            image_url=self.image_url,
            image_sha256=self.image_sha256,
        )

    def _alt_text(self) -> str | None:
        if self.style == ALT_TEXT_STYLE:  # that style's caption is the alt text (enhanced or not)
            return self.caption[:ALT_TEXT_MAX_CHARS]
        return self.vlm.alt_text


@dataclass(frozen=True)
class PipelineHealth:
    vlm: bool
    enhancer: bool | None  # None: not checked, because enhancement is off by default


class CaptionPipeline:
    def __init__(
        self,
        *,
        source: S3Source,
        urls: UrlSource | None = None,
        preparer: ImagePreparer,
        vlm: VlmBackend,
        enhancer: EnhancerBackend,
        styles: Mapping[str, Style],
        vocabularies: Mapping[str, Vocabulary] | None = None,
        use_gpt_oss_default: bool,
        reasoning_level_default: ReasoningLevel,
        max_concurrent_images: int,
        metrics: GatewayMetrics | None = None,
        slot_wait_s: float | None = None,
    ) -> None:
        self.source = source
        # urls None: image URLs are refused (IMAGE_URL_ENABLED=false for the API).
        self.images = ImageSources(source, urls, max_concurrent_images, metrics, slot_wait_s)
        self.preparer = preparer
        self.vlm = vlm
        self.enhancer = enhancer
        self.styles = styles
        self.vocabularies: Mapping[str, Vocabulary] = vocabularies or {}
        self.use_gpt_oss_default = use_gpt_oss_default
        self.reasoning_level_default = reasoning_level_default
        self.metrics = metrics
        self._health = CachedProbe(self._probe_health)

    def spec_for(self, request: CaptionRequest) -> CaptionSpec:
        return caption_spec(self.styles, request, self.vocabularies)

    def enhances(self, request: CaptionRequest) -> bool:
        return request.use_gpt_oss if request.use_gpt_oss is not None else self.use_gpt_oss_default

    def params_for(self, request: CaptionRequest) -> CaptionParams:
        """What will decide this request's caption besides the image (validates style and language)."""
        spec = self.spec_for(request)
        enhance = self.enhances(request)
        budget = self.preparer.budget
        return CaptionParams(
            style=spec.style.name,
            language=spec.language,
            prompt=spec.custom_prompt,
            use_gpt_oss=enhance,
            reasoning_level=(request.reasoning_level or self.reasoning_level_default) if enhance else None,
            vlm_model=self.vlm.model,
            enhancer_model=self.enhancer.model if enhance else None,
            grounding=("strict" if self.enhancer.grounded else "off") if enhance else None,
            max_pixels=budget.max_pixels,
            min_pixels=budget.min_pixels,
            structured=self.vlm.structured,
            vocabulary=spec.vocabulary_key,
            context=spec.context,
        )

    async def caption(self, request: CaptionRequest, timings: StageTimings | None = None) -> CaptionResult:
        timings = timings if timings is not None else StageTimings()
        try:
            self.params_for(request)  # a bad style, language or vocabulary: refused before any download
        except BaseException:
            if request.image is not None:
                request.image.release()
            raise
        held = await self.hold(request, timings)
        return await self.caption_held(request, held, timings)

    def check_input(self, request: CaptionRequest) -> InputKind:
        """The request names one image, in a form this pipeline takes (before any slot or download)."""
        kind = request.input_kind()
        if kind == "s3":
            parse_s3_uri(request.s3_uri)
        elif kind == "url" and self.images.urls is None:
            raise ImageUrlForbidden(
                "image URLs are not fetched by this gateway (IMAGE_URL_ENABLED=false)",
                code="image_url_disabled",
            )
        return kind

    async def hold(self, request: CaptionRequest, timings: StageTimings) -> HeldImage:
        """The fetch stage: the image's bytes in memory under one image slot, whichever the input."""
        kind = self.check_input(request)
        if request.image is not None:
            return request.image  # received by the caller under its own slot
        if kind == "url":
            return await self.images.from_url(str(request.image_url), timings.stage)
        return await self.images.from_s3(parse_s3_uri(request.s3_uri), timings.stage)

    async def lease(self) -> Lease:
        """An image slot for a caller about to receive an image's bytes itself (an upload)."""
        return await self.images.lease()

    async def caption_held(
        self, request: CaptionRequest, held: HeldImage, timings: StageTimings
    ) -> CaptionResult:
        """Prepares the held bytes (then gives their slot back), and captions them."""
        try:
            spec = self.spec_for(request)
            with timings.stage("image"):
                image = await self.preparer.prepare(held.data, read_metadata=spec.context)
        finally:
            held.release()  # decoded or refused: the original's slot serves the next image
        params = self.params_for(request)
        if self.metrics:
            self.metrics.vlm_bytes.inc(len(image.jpeg))
            if image.passed_through:
                self.metrics.passed_through.inc()
        context = context_from(image.metadata) if image.metadata is not None else None
        with timings.stage("vlm"):
            vlm = await self.vlm.describe(image, spec, context)
        result = replace(self._result(request, spec, params, held, image, vlm), context_used=context)
        if params.use_gpt_oss:
            with timings.stage("enhancer"):
                result = await self._enhance(result, request, spec)
        return result

    async def health(self) -> PipelineHealth:
        """The VLM's readiness, and the enhancer's when it enhances by default (a missing gpt-oss host
        must not slow every probe when nothing uses it). At most a second old: a burst of probes costs
        one backend call."""
        return await self._health.get()

    async def _probe_health(self) -> PipelineHealth:
        if not self.use_gpt_oss_default:
            return PipelineHealth(vlm=await self.vlm.health(), enhancer=None)
        vlm, enhancer = await asyncio.gather(self.vlm.health(), self.enhancer.health())
        return PipelineHealth(vlm=vlm, enhancer=enhancer)

    def _result(
        self,
        request: CaptionRequest,
        spec: CaptionSpec,
        params: CaptionParams,
        held: HeldImage,
        image: PreparedImage,
        vlm: VlmCaption,
    ) -> CaptionResult:
        return CaptionResult(
            s3_uri=request.s3_uri or None,
            caption=vlm.caption,
            enhanced=False,
            vlm=vlm,
            image=image,
            etag=held.etag,
            models={"vlm": self.vlm.model, "enhancer": None},
            usage={"vlm": vlm.usage},
            style=spec.style.name,
            params=params,
            image_sha256=held.sha256,
            image_url=request.image_url,
        )

    async def _enhance(
        self, result: CaptionResult, request: CaptionRequest, spec: CaptionSpec
    ) -> CaptionResult:
        level = result.params.reasoning_level or self.reasoning_level_default
        models = {**result.models, "enhancer": self.enhancer.model}
        try:
            enhancement = await self.enhancer.enhance(
                result.vlm, level, spec.language, max_chars=max(spec.style.caption_max_chars * 2, 200)
            )
        except EnhancementFailed as exc:
            # The caption is never lost because the second stage failed.
            return replace(result, models=models, enhancement_error=f"{exc.code}: {exc.message}")
        return replace(
            result,
            caption=enhancement.caption,
            original_caption=result.caption,
            enhanced=True,
            added_terms=enhancement.added_terms,
            models=models,
            usage={**result.usage, "enhancer": enhancement.usage},
        )
