"""The composition root: every outside client built from ``Settings``, opened together, closed in ``finally``.

The HTTP app, the batch command (both engines), ``eval`` and the event workers (``events/runtime.py``) call
these, so they all run the same pipeline on the same kind of clients. Nothing here knows about HTTP serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from gateway.backends.enhancer import EnhancerBackend
from gateway.backends.openai_chat import HEALTH_TIMEOUT_S, ChatClient, auth_headers
from gateway.backends.vlm import VlmBackend
from gateway.caching import CaptionService
from gateway.catalogue import Catalogue, open_catalogue
from gateway.geometry import PixelBudget
from gateway.http_client import make_http_client
from gateway.imaging import ImagePreparer
from gateway.metrics import GatewayMetrics
from gateway.pipeline import CaptionPipeline
from gateway.review import ReviewService
from gateway.settings import Settings
from gateway.sources.s3 import S3Session, S3Source, open_s3_client, tls_verify
from gateway.sources.s3_writes import S3Writer
from gateway.sources.url import UrlHooks, UrlSource
from gateway.sources.url_policy import DEFAULT_PORTS, Endpoint, HostList, UrlPolicy
from gateway.styles import load_styles
from gateway.thumbnails import Thumbnails
from gateway.vocabularies import check_style_vocabularies, load_vocabularies
from gateway.warmup import VocabularyWarmup
from gateway.writeback import require_libxmp

HEALTH_POOL_CONNECTIONS = 4


@dataclass(frozen=True)
class S3:
    """Reads and writes on one aiobotocore client, object bodies on one pooled HTTP client."""

    source: S3Source
    writer: S3Writer


def s3_on(session: S3Session, http: httpx.AsyncClient, settings: Settings) -> S3:
    source = S3Source(session, http, max_bytes=settings.max_image_bytes, timeout_s=settings.s3_timeout_s)
    return S3(source, S3Writer(source))


@asynccontextmanager
async def open_s3(settings: Settings) -> AsyncIterator[S3]:
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(
            open_s3_client(
                region=settings.aws_region,
                endpoint_url=settings.s3_endpoint_url,
                timeout_s=settings.s3_timeout_s,
                max_connections=settings.max_concurrency,
            )
        )
        # Presigned GETs of object bodies: the same pool kind, limits and timeouts as the model servers'.
        http = await stack.enter_async_context(
            make_http_client(None, settings.s3_timeout_s, settings.max_concurrency, verify=tls_verify())
        )
        yield s3_on(session, http, settings)


def url_policy(settings: Settings) -> UrlPolicy:
    """The URL rules from IMAGE_URL_*, with the gateway's own backends always refused."""
    backends = []
    for base in (settings.vlm_base_url, settings.gpt_oss_base_url, settings.s3_endpoint_url):
        if base:
            url = httpx.URL(base)
            backends.append(Endpoint(url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0)))
    return UrlPolicy(
        schemes=settings.image_url_scheme_set,
        ports=settings.image_url_port_set,
        allow=HostList.parse(settings.image_url_allow_hosts),
        deny=HostList.parse(settings.image_url_deny_hosts),
        backends=tuple(backends),
    )


@asynccontextmanager
async def open_urls(settings: Settings, hooks: UrlHooks | None = None) -> AsyncIterator[UrlSource]:
    urls = UrlSource(
        url_policy(settings),
        max_bytes=settings.max_image_bytes,
        connect_timeout_s=settings.image_url_connect_timeout_s,
        timeout_s=settings.image_url_timeout_s,
        hooks=hooks,
    )
    try:
        yield urls
    finally:
        await urls.aclose()


@asynccontextmanager
async def open_pipeline(
    settings: Settings,
    *,
    s3: S3 | None = None,
    metrics: GatewayMetrics | None = None,
    slot_wait_s: float | None = None,
    image_urls: bool | None = None,
    url_hooks: UrlHooks | None = None,
) -> AsyncIterator[CaptionPipeline]:
    """The caption pipeline and its clients. Pass ``s3`` to share a client the caller already holds
    (batch lists and writes on it), so a process opens S3 once. ``image_urls``: whether it fetches image
    URLs (default ``IMAGE_URL_ENABLED``; a batch fetches the URLs its operator listed)."""
    styles = load_styles(settings.styles_file)  # a bad styles file fails at start-up
    vocabularies = load_vocabularies(
        settings.vocabularies_dir, settings.vocabulary_max_terms
    )  # and a bad list
    check_style_vocabularies(styles, vocabularies)
    async with AsyncExitStack() as stack:
        if s3 is None:
            s3 = await stack.enter_async_context(open_s3(settings))
        fetch_urls = settings.image_url_enabled if image_urls is None else image_urls
        urls = await stack.enter_async_context(open_urls(settings, url_hooks)) if fetch_urls else None
        # One small pool for readiness probes of both backends, apart from the caption pools.
        health_http = await stack.enter_async_context(
            make_http_client(None, HEALTH_TIMEOUT_S, HEALTH_POOL_CONNECTIONS)
        )
        vlm_chat = await _open_chat(
            stack,
            settings,
            health_http,
            "vlm",
            settings.vlm_base_url,
            settings.vlm_api_key,
            settings.vlm_timeout_s,
        )
        enhancer_chat = await _open_chat(
            stack,
            settings,
            health_http,
            "enhancer",
            settings.gpt_oss_base_url,
            settings.gpt_oss_api_key,
            settings.gpt_oss_timeout_s,
        )
        preparer = ImagePreparer(
            PixelBudget(
                settings.vlm_max_pixels,
                settings.vlm_min_pixels,
                settings.max_image_pixels,
                settings.max_decode_bytes,
            ),
            settings.max_concurrent_images,
        )
        stack.callback(preparer.close)
        yield CaptionPipeline(
            source=s3.source,
            urls=urls,
            preparer=preparer,
            vlm=VlmBackend(
                vlm_chat,
                model=settings.vlm_model_id,
                temperature=settings.vlm_temperature,
                max_tokens=settings.vlm_max_tokens,
                structured=settings.vlm_structured,
            ),
            enhancer=EnhancerBackend(
                enhancer_chat,
                model=settings.gpt_oss_model_id,
                max_tokens=settings.gpt_oss_max_tokens,
                grounded=settings.grounding == "strict",
            ),
            styles=styles,
            vocabularies=vocabularies,
            use_gpt_oss_default=settings.use_gpt_oss,
            reasoning_level_default=settings.gpt_oss_reasoning_level,
            max_concurrent_images=settings.max_concurrent_images,
            metrics=metrics,
            slot_wait_s=slot_wait_s,
        )


async def _open_chat(
    stack: AsyncExitStack,
    settings: Settings,
    health_http: httpx.AsyncClient,
    name: str,
    base_url: str,
    api_key: SecretStr | None,
    timeout_s: float,
) -> ChatClient:
    """A pooled client for one model server, with its own key and timeout."""
    http = await stack.enter_async_context(
        make_http_client(auth_headers(_secret(api_key)), timeout_s, settings.max_concurrency)
    )
    return ChatClient(
        name, base_url, http, max_attempts=settings.backend_max_attempts, health_http=health_http
    )


@dataclass(frozen=True)
class Services:
    """Everything the HTTP app serves from: S3, the pipeline, the catalogue and the cache in front, the
    vocabularies' warm-up (running in the background while the app serves), and the review page's two
    services (decisions with their write-back, previews)."""

    s3: S3
    pipeline: CaptionPipeline
    catalogue: Catalogue
    captions: CaptionService
    warmup: VocabularyWarmup
    review: ReviewService
    thumbnails: Thumbnails


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    metrics: GatewayMetrics | None = None,
    slot_wait_s: float | None = None,
    url_hooks: UrlHooks | None = None,
) -> AsyncIterator[Services]:
    """The catalogue first: a database that cannot be migrated refuses the start before any client opens."""
    check_review_settings(settings)
    async with (
        open_catalogue(settings) as catalogue,
        open_s3(settings) as s3,
        open_pipeline(
            settings, s3=s3, metrics=metrics, slot_wait_s=slot_wait_s, url_hooks=url_hooks
        ) as pipeline,
    ):
        read_cache = settings.cache == "on"
        captions = CaptionService(pipeline, catalogue, read_cache=read_cache, metrics=metrics)
        warmup = VocabularyWarmup(pipeline.vlm, pipeline.styles, pipeline.vocabularies)
        review = ReviewService(catalogue, s3.source, s3.writer, settings)
        # In the background: readiness reports it, and no request waits for it.
        warming = asyncio.create_task(warmup.run(), name="vocabulary-warmup")
        try:
            yield Services(s3, pipeline, catalogue, captions, warmup, review, Thumbnails(pipeline))
        finally:
            warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warming


def check_review_settings(settings: Settings) -> None:
    """XMP write-back on approval needs the Exempi library: refused at start, not at the first approval."""
    if "xmp" in settings.review_write_back_modes:
        require_libxmp()


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
