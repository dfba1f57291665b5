"""Builds the FastAPI app: routers, error handlers, middleware, and a lifespan that owns every client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gateway.api import captions, events, review, thumbnails
from gateway.api.errors import register_error_handlers
from gateway.api.middleware import RequestContextMiddleware
from gateway.api.routes import router
from gateway.api.schemas import add_body_schemas
from gateway.api.web import web_router
from gateway.backends.openai_chat import redact_url
from gateway.events.runtime import open_events
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings
from gateway.sources.url import UrlHooks
from gateway.wiring import open_services

log = logging.getLogger("gateway")
SLOT_WAIT_S = 30.0


def create_app(settings: Settings, *, url_hooks: UrlHooks | None = None) -> FastAPI:
    """``url_hooks``: tests put a resolver and a loopback-only network under the URL rules."""
    metrics = GatewayMetrics(settings.prometheus_multiproc_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # An HTTP client is told to come back rather than queue without bound for an image slot.
        async with (
            open_services(
                settings, metrics=metrics, slot_wait_s=SLOT_WAIT_S, url_hooks=url_hooks
            ) as services,
            open_events(settings, services, workers=settings.event_workers, metrics=metrics) as events,
        ):
            app.state.services = services
            app.state.events = events
            log.info(
                "florence-tagger ready: vlm=%s enhancer=%s (enabled=%s) s3=%s catalogue=%s event_workers=%d",
                settings.vlm_model_id,
                settings.gpt_oss_model_id,
                settings.use_gpt_oss,
                redact_url(settings.s3_endpoint_url) if settings.s3_endpoint_url else "aws",
                services.catalogue.database.description,
                settings.event_workers,
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
    app.include_router(captions.router)
    app.include_router(events.router)
    app.include_router(review.router)
    app.include_router(thumbnails.router)
    app.include_router(web_router())
    register_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    _document_caption_bodies(app)
    return app


def _document_caption_bodies(app: FastAPI) -> None:
    """POST /caption reads its own body (JSON or multipart): its two schemas join the generated document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_body_schemas(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """The uvicorn factory: the one place settings are read from the environment."""
    return create_app(Settings())
