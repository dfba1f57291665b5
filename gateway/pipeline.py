"""One caption, end to end: S3 -> image preparation -> VLM -> optional enhancer.

Plain async Python with no HTTP in it, so the API, the batch command and a Ray actor call the same
``CaptionPipeline.caption``. It raises the typed errors of ``gateway.errors``; callers map them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace

from gateway.backends.enhancer import EnhancerBackend
from gateway.backends.vlm import CaptionSpec, VlmBackend, VlmCaption
from gateway.context import context_from
from gateway.errors import EnhancementFailed, GatewayBusy, InvalidInput
from gateway.grounding import AddedTerm
from gateway.imaging import ImagePreparer, PreparedImage
from gateway.languages import LANGUAGES
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
from gateway.sources.s3 import S3Object, S3Source
from gateway.sources.s3_uri import parse_s3_uri
from gateway.styles import (
    ALT_TEXT_MAX_CHARS,
    ALT_TEXT_STYLE,
    DEFAULT_STYLE_DETAILED,
    DEFAULT_STYLE_SHORT,
    Style,
)
from gateway.text import quoted
from gateway.vocabularies import Vocabulary

SLOT_RETRY_AFTER_S = 2.0


@dataclass(frozen=True)
class CaptionRequest:
    s3_uri: str
    detailed: bool = True
    use_gpt_oss: bool | None = None
    reasoning_level: ReasoningLevel | None = None
    style: str | None = None
    language: str | None = None
    prompt: str | None = None
    vocabulary: str | None = None  # a VOCABULARIES_DIR name; default: the style's own, if it names one
    context: bool = False  # give the VLM the facts of the image's own metadata


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
    s3_uri: str
    caption: str
    enhanced: bool
    vlm: VlmCaption
    image: PreparedImage
    etag: str
    models: dict[str, str | None]
    usage: dict[str, dict[str, int]]
    style: str
    params: CaptionParams
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
        )

    def _alt_text(self) -> str | None:
        if self.style == ALT_TEXT_STYLE:  # that style's caption is the alt text (enhanced or not)
            return self.caption[:ALT_TEXT_MAX_CHARS]
        return self.vlm.alt_text


@dataclass(frozen=True)
class PipelineHealth:
    vlm: bool
    enhancer: bool | None  # None: not checked, because enhancement is off by default


def caption_spec(
    styles: Mapping[str, Style], request: CaptionRequest, vocabularies: Mapping[str, Vocabulary] | None = None
) -> CaptionSpec:
    """Validates the request's style, language and vocabulary before any backend (or batch output) is
    touched."""
    name = request.style or (DEFAULT_STYLE_DETAILED if request.detailed else DEFAULT_STYLE_SHORT)
    if name not in styles:
        raise InvalidInput(
            f"unknown style {quoted(name)}; valid styles: {', '.join(sorted(styles))}", code="unknown_style"
        )
    language = (request.language or "en").lower()
    if language not in LANGUAGES:
        raise InvalidInput(
            f"unsupported language {quoted(request.language)}; supported: {', '.join(LANGUAGES)}",
            code="unsupported_language",
        )
    style = styles[name]
    vocabulary = _vocabulary(request.vocabulary or style.vocabulary, vocabularies or {})
    return CaptionSpec(style, language, request.prompt, vocabulary, request.context)


def _vocabulary(name: str | None, vocabularies: Mapping[str, Vocabulary]) -> Vocabulary | None:
    if name is None:
        return None
    if name not in vocabularies:
        known = ", ".join(sorted(vocabularies)) or "none (VOCABULARIES_DIR is not set)"
        raise InvalidInput(f"unknown vocabulary {quoted(name)}; known: {known}", code="unknown_vocabulary")
    return vocabularies[name]


class CaptionPipeline:
    def __init__(
        self,
        *,
        source: S3Source,
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
        self.preparer = preparer
        # One slot covers download and decode, so memory holds at most this many images at once.
        self._slots = asyncio.Semaphore(max_concurrent_images)
        self.vlm = vlm
        self.enhancer = enhancer
        self.styles = styles
        self.vocabularies: Mapping[str, Vocabulary] = vocabularies or {}
        self.use_gpt_oss_default = use_gpt_oss_default
        self.reasoning_level_default = reasoning_level_default
        self.metrics = metrics
        self.slot_wait_s = slot_wait_s  # None: wait as long as it takes (batch bounds its own concurrency)
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
        location = parse_s3_uri(request.s3_uri)
        spec = self.spec_for(request)
        params = self.params_for(request)
        async with self.image_slot():
            with self._in_flight():
                with timings.stage("s3"):
                    obj = await self.source.fetch(location)
                with timings.stage("image"):
                    image = await self.preparer.prepare(obj.data, read_metadata=spec.context)
        if self.metrics:
            self.metrics.vlm_bytes.inc(len(image.jpeg))
            if image.passed_through:
                self.metrics.passed_through.inc()
        context = context_from(image.metadata) if image.metadata is not None else None
        with timings.stage("vlm"):
            vlm = await self.vlm.describe(image, spec, context)
        result = replace(self._result(request, spec, params, obj, image, vlm), context_used=context)
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

    @asynccontextmanager
    async def image_slot(self) -> AsyncIterator[None]:
        """One of ``MAX_CONCURRENT_IMAGES`` slots: whatever holds an image's bytes in memory takes one."""
        slots = self._slots
        if self.slot_wait_s is None:
            async with slots:
                yield
            return
        try:
            async with asyncio.timeout(self.slot_wait_s):
                await slots.acquire()
        except TimeoutError:
            # A client waiting longer than this is better told to come back than left hanging.
            raise GatewayBusy(
                f"every image slot (MAX_CONCURRENT_IMAGES) has been busy for {self.slot_wait_s:g} s",
                retry_after=SLOT_RETRY_AFTER_S,
            ) from None
        try:
            yield
        finally:
            slots.release()

    @contextmanager
    def _in_flight(self) -> Iterator[None]:
        if self.metrics is None:
            yield
            return
        with self.metrics.images_in_flight.track_inprogress():
            yield

    def _result(
        self,
        request: CaptionRequest,
        spec: CaptionSpec,
        params: CaptionParams,
        obj: S3Object,
        image: PreparedImage,
        vlm: VlmCaption,
    ) -> CaptionResult:
        return CaptionResult(
            s3_uri=request.s3_uri,
            caption=vlm.caption,
            enhanced=False,
            vlm=vlm,
            image=image,
            etag=obj.etag,
            models={"vlm": self.vlm.model, "enhancer": None},
            usage={"vlm": vlm.usage},
            style=spec.style.name,
            params=params,
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
