"""The HTTP routes of the original service and the probes: thin adapters to the cached pipeline."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from gateway.api import captions as catalogue_routes
from gateway.api import events as events_routes
from gateway.api import review as review_routes
from gateway.api import thumbnails as thumbnail_routes
from gateway.api.deps import (
    ApiKeyDep,
    CaptionsDep,
    CatalogueDep,
    EventsDep,
    EventsKeyDep,
    MetricsDep,
    PipelineDep,
    SettingsDep,
    WarmupDep,
)
from gateway.api.errors import CAPTION_RESPONSES, FRONT_DOOR_RESPONSES, PROTECTED_RESPONSES
from gateway.api.inputs import CaptionBody, read_json
from gateway.api.schemas import (
    CAPTION_REQUEST_BODY,
    BackendStatus,
    CaptionOut,
    CatalogueStatus,
    HealthOut,
    LiveOut,
    StylesOut,
    VocabularyStatus,
)
from gateway.api.uploads import read_upload
from gateway.errors import CatalogueUnavailable, InvalidInput
from gateway.languages import LANGUAGES
from gateway.pipeline import CaptionPipeline, StageTimings

# Public and protected routers, so that which routes need a key is decided in one place: the request guard
# (guard.py) lets through without a key only the paths of ``public_router`` (and the API docs); every other
# route, these routers' and any added later, needs one when API_KEYS is set. ``include_routers`` then
# declares the key on the protected routes, so the OpenAPI schema says what the deployment does
# (POST /v1/events/s3 takes EVENTS_TOKEN too: its own dependency, declared when either is set).
router = APIRouter()
public_router = APIRouter()


def include_routers(
    app: FastAPI, keys_required: bool, events_keys_required: bool, public: tuple[APIRouter, ...] = ()
) -> None:
    """``public``: more routers whose paths need no key (the review page's files, built per app)."""
    protected_routers = (
        router,
        catalogue_routes.router,
        review_routes.router,
        thumbnail_routes.router,
        events_routes.router,
    )
    for protected in protected_routers:
        if keys_required:
            app.include_router(protected, dependencies=[ApiKeyDep], responses=PROTECTED_RESPONSES)
        else:
            app.include_router(protected)
    intake = events_routes.intake_router
    app.include_router(intake, dependencies=[EventsKeyDep] if events_keys_required else [])
    for open_router in (public_router, *public):
        app.include_router(open_router)


@router.post(
    "/caption",
    response_model=CaptionOut,
    response_model_exclude_none=True,
    responses={**FRONT_DOOR_RESPONSES, **CAPTION_RESPONSES},
    openapi_extra=CAPTION_REQUEST_BODY,
)
async def caption(request: Request, captions: CaptionsDep, settings: SettingsDep) -> CaptionOut:
    """Caption one image, named by JSON (`s3_uri`, `image_url`, or its bytes as `image_base64`) or sent as a
    multipart upload (`file`, with the same fields as form fields)."""
    timings = StageTimings()
    request.state.timings = timings  # the access log reports them, for failed requests too
    body = await _caption_body(request, captions.pipeline, settings.max_image_bytes)
    served = await captions.caption(body.request, refresh=body.refresh, timings=timings)
    return CaptionOut(**dict(served.record), cached=served.cached)


async def _caption_body(request: Request, pipeline: CaptionPipeline, max_image_bytes: int) -> CaptionBody:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await read_upload(request, pipeline, max_image_bytes)
    if media and media != "application/json" and not media.endswith("+json"):
        raise InvalidInput(f"send application/json, or multipart/form-data with a file (not {media[:80]})")
    return await read_json(request, pipeline, max_image_bytes)


@public_router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health(
    settings: SettingsDep, pipeline: PipelineDep, catalogue: CatalogueDep, warmup: WarmupDep
) -> JSONResponse:
    """Ready when the VLM answers its own /health; the enhancer, the catalogue and the vocabularies are
    reported but never flip `ok`: captions go on without them (unenhanced, uncached; a vocabulary not yet
    warmed only waits longer)."""
    probed, catalogue_ok = await asyncio.gather(pipeline.health(), catalogue.ping())
    body = HealthOut(
        ok=probed.vlm,
        backend=settings.backend_name,
        device=settings.vlm_device,
        gpt_oss_enabled=settings.use_gpt_oss,
        gpt_oss_model=settings.gpt_oss_model_id,
        gpt_oss_reasoning_level=settings.gpt_oss_reasoning_level,
        vlm_load_8bit=settings.vlm_load_8bit,
        backends={
            "vlm": BackendStatus(ok=probed.vlm, enabled=True, model=settings.vlm_model_id),
            "enhancer": BackendStatus(
                ok=probed.enhancer, enabled=settings.use_gpt_oss, model=settings.gpt_oss_model_id
            ),
            "catalogue": CatalogueStatus(ok=catalogue_ok, engine=catalogue.engine_name),
        },
        vocabularies={
            name: VocabularyStatus(
                state=warmup.states[name],
                terms=len(vocabulary.terms),
                sha256=vocabulary.sha256,
                error=warmup.errors.get(name),
            )
            for name, vocabulary in pipeline.vocabularies.items()
        },
    )
    return JSONResponse(body.model_dump(), status_code=200 if probed.vlm else 503)


@public_router.get("/livez", response_model=LiveOut)
async def livez() -> LiveOut:
    """Answers while the process runs, whatever the backends do: for orchestrators' liveness probes."""
    return LiveOut()


@public_router.get("/styles", response_model=StylesOut)
async def styles(pipeline: PipelineDep) -> StylesOut:
    return StylesOut(
        styles={name: style.description for name, style in pipeline.styles.items()},
        languages=dict(LANGUAGES),
        vocabularies={name: len(vocabulary.terms) for name, vocabulary in pipeline.vocabularies.items()},
    )


@public_router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(metrics: MetricsDep, events: EventsDep) -> Response:
    # The queue's figures are the database's, read now; a database that is down leaves the last ones.
    with contextlib.suppress(CatalogueUnavailable):
        stats = await events.queue.stats()
        metrics.observe_queue(stats.counts, stats.oldest_age_s)
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
