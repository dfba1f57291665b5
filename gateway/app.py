"""Builds the FastAPI app: routers, error handlers, middleware, and a lifespan that owns every client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from pydantic import SecretStr

from gateway.api.errors import register_error_handlers
from gateway.api.middleware import RequestContextMiddleware
from gateway.api.routes import router
from gateway.backends.enhancer import EnhancerBackend
from gateway.backends.openai_chat import HEALTH_TIMEOUT_S, ChatClient, make_http_client, redact_url
from gateway.backends.vlm import VlmBackend
from gateway.imaging import ImagePreparer, PixelBudget
from gateway.metrics import GatewayMetrics
from gateway.pipeline import CaptionPipeline
from gateway.settings import Settings
from gateway.sources.s3 import S3Source, open_s3_client
from gateway.styles import load_styles

log = logging.getLogger("gateway")
SLOT_WAIT_S = 30.0


@asynccontextmanager
async def open_pipeline(
    settings: Settings, metrics: GatewayMetrics | None = None, slot_wait_s: float | None = None
) -> AsyncIterator[CaptionPipeline]:
    """Every outside client the pipeline needs, opened together and closed in ``finally``.

    Shared by the HTTP app and the batch command, so both run the same pipeline with the same clients.
    """
    styles = load_styles(settings.styles_file)  # a bad styles file fails at start-up
    async with AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(open_s3_client(settings))
        vlm_http = await stack.enter_async_context(
            make_http_client(_secret(settings.vlm_api_key), settings.vlm_timeout_s, settings.max_concurrency)
        )
        enhancer_http = await stack.enter_async_context(
            make_http_client(
                _secret(settings.gpt_oss_api_key), settings.gpt_oss_timeout_s, settings.max_concurrency
            )
        )
        # One small pool for readiness probes of both backends, apart from the caption pools.
        health_http = await stack.enter_async_context(make_http_client(None, HEALTH_TIMEOUT_S, 4))
        preparer = ImagePreparer(
            PixelBudget(settings.vlm_max_pixels, settings.vlm_min_pixels, settings.max_image_pixels),
            settings.max_concurrent_images,
        )
        stack.callback(preparer.close)
        attempts = settings.backend_max_attempts
        yield CaptionPipeline(
            source=S3Source(s3, max_bytes=settings.max_image_bytes, timeout_s=settings.s3_timeout_s),
            preparer=preparer,
            vlm=VlmBackend(
                ChatClient(
                    "vlm", settings.vlm_base_url, vlm_http, max_attempts=attempts, health_http=health_http
                ),
                model=settings.vlm_model_id,
                temperature=settings.vlm_temperature,
                max_tokens=settings.vlm_max_tokens,
                structured=settings.vlm_structured,
            ),
            enhancer=EnhancerBackend(
                ChatClient(
                    "enhancer",
                    settings.gpt_oss_base_url,
                    enhancer_http,
                    max_attempts=attempts,
                    health_http=health_http,
                ),
                model=settings.gpt_oss_model_id,
                max_tokens=settings.gpt_oss_max_tokens,
                grounded=settings.grounding == "strict",
            ),
            styles=styles,
            use_gpt_oss_default=settings.use_gpt_oss,
            reasoning_level_default=settings.gpt_oss_reasoning_level,
            metrics=metrics,
            slot_wait_s=slot_wait_s,
        )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def create_app(settings: Settings) -> FastAPI:
    metrics = GatewayMetrics(settings.prometheus_multiproc_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # An HTTP client is told to come back rather than queue without bound for an image slot.
        async with open_pipeline(settings, metrics, slot_wait_s=SLOT_WAIT_S) as pipeline:
            app.state.pipeline = pipeline
            log.info(
                "florence-tagger ready: vlm=%s enhancer=%s (enabled=%s) s3=%s",
                settings.vlm_model_id,
                settings.gpt_oss_model_id,
                settings.use_gpt_oss,
                redact_url(settings.s3_endpoint_url) if settings.s3_endpoint_url else "aws",
            )
            yield

    app = FastAPI(
        title="florence-tagger",
        version="0.2.0",
        summary="Self-hosted image captions from S3 with Qwen2.5-VL on vLLM, optionally enhanced by gpt-oss",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(router)
    register_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory: the one place settings are read from the environment."""
    return create_app(Settings())
