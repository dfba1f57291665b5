"""Builds the FastAPI app: routers, error handlers, middleware, and a lifespan that owns every client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, FastAPI

from gateway.admission import Admission
from gateway.api import events as events_routes
from gateway.api.deps import EVENTS_CHALLENGE
from gateway.api.errors import SERVER_RESPONSES, register_error_handlers
from gateway.api.guard import BearerKeys, GuardPolicies, RequestGuard, RoutePolicy
from gateway.api.inputs import ENVELOPE_BYTES, base64_cap
from gateway.api.middleware import RequestContextMiddleware
from gateway.api.routes import include_routers, public_router
from gateway.api.schemas import add_body_schemas
from gateway.api.web import web_router
from gateway.backends.openai_chat import redact_url
from gateway.events.runtime import open_events
from gateway.logs import configure_logging
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings
from gateway.sources.url import UrlHooks
from gateway.wiring import open_services

log = logging.getLogger("gateway")
SLOT_WAIT_S = 30.0


def create_app(settings: Settings, *, url_hooks: UrlHooks | None = None) -> FastAPI:
    """``url_hooks``: tests put a resolver and a loopback-only network under the URL rules."""
    metrics = GatewayMetrics(settings.prometheus_multiproc_dir)
    admission = Admission(
        settings.max_inflight,
        settings.max_queued,
        settings.queue_timeout_s,
        max_lag_s=settings.max_loop_lag_ms / 1000,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # An HTTP client is told to come back rather than queue without bound for an image slot.
        async with (
            open_services(
                settings, metrics=metrics, slot_wait_s=SLOT_WAIT_S, url_hooks=url_hooks
            ) as services,
            open_events(settings, services, workers=settings.event_workers, metrics=metrics) as events,
            admission.watching(),
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
        responses=SERVER_RESPONSES,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    review_page = web_router()
    include_routers(
        app,
        keys_required=bool(settings.api_key_list),
        events_keys_required=bool(settings.events_key_list),
        public=(review_page,),
    )
    register_error_handlers(app)
    policies = guard_policies(settings, app, admission, public=(public_router, review_page))
    app.add_middleware(RequestGuard, routes=lambda: app.router.routes, policies=policies)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)  # outermost: it logs what the guard refuses
    _document_caption_bodies(app)
    return app


def guard_policies(
    settings: Settings, app: FastAPI, admission: Admission, public: tuple[APIRouter, ...]
) -> GuardPolicies:
    """Per-route rules of the request guard. Everything needs the API key except the public routers'
    paths and the API docs; a route with its own rules (its own key, its own body cap) goes in overrides."""
    keys = BearerKeys.of(settings.api_key_list)
    protected = RoutePolicy(keys, settings.max_request_bytes, settings.client_body_timeout_s)
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    routes = [route for router in public for route in router.routes]
    public_paths = {getattr(route, "path", "") for route in routes} | {p for p in docs if p}
    # POST /caption carries an image (multipart, or base64 in JSON): its cap follows MAX_IMAGE_BYTES, and
    # the route's own reader (api/inputs.py) holds each kind of body to its exact limit.
    caption_bytes = max(settings.max_request_bytes, base64_cap(settings.max_image_bytes) + ENVELOPE_BYTES)
    return GuardPolicies(
        protected=protected,
        public=replace(protected, auth=None),
        public_paths=frozenset(public_paths),
        overrides={
            # The expensive route: admission control, and its work cancelled when the client leaves.
            "/caption": replace(
                protected,
                admission=admission,
                max_body_bytes=caption_bytes,
                cap_source="MAX_IMAGE_BYTES as base64, or MAX_REQUEST_BYTES if larger",
                streams_body=True,  # uploads are read under an image slot, never held whole here
            ),
            # Stores deliver events with API_KEYS or EVENTS_TOKEN, as a Bearer token or a Basic password
            # (SNS), and a delivery is a few KB: its own key check and its own 1 MB cap.
            "/v1/events/s3": replace(
                protected,
                auth=BearerKeys.of(settings.events_key_list, basic=True, challenge=EVENTS_CHALLENGE),
                max_body_bytes=events_routes.MAX_BODY_BYTES,
                cap_source="an event delivery's limit",
            ),
        },
    )


def _document_caption_bodies(app: FastAPI) -> None:
    """POST /caption reads its own body (JSON or multipart): its two schemas join the generated document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_body_schemas(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """The uvicorn factory: the one place settings are read from the environment. Each worker process
    runs it, so logging is configured here too (a spawned worker starts with none)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.secret_values)
    return create_app(settings)
