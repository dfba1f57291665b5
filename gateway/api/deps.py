"""Dependencies the routes inject: the pipeline and settings the lifespan built, and the API-key check.

All are ``async def``: FastAPI runs a plain ``def`` dependency in a thread pool, a thread hop per
dependency per request for what is an attribute read.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from gateway.caching import CaptionService
from gateway.catalogue import Catalogue
from gateway.events.intake import EventIntake
from gateway.events.runtime import Events
from gateway.metrics import GatewayMetrics
from gateway.pipeline import CaptionPipeline
from gateway.review import ReviewService
from gateway.settings import Settings
from gateway.thumbnails import Thumbnails
from gateway.warmup import VocabularyWarmup
from gateway.wiring import Services

EVENTS_CHALLENGE = 'Basic realm="florence-tagger events", Bearer realm="florence-tagger events"'
_bearer = HTTPBearer(auto_error=False, description="One of API_KEYS, when that setting is set")
_events_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="EventsBearer",
    description="One of API_KEYS, or EVENTS_TOKEN (accepted on POST /v1/events/s3 only)",
)
_events_basic = HTTPBasic(
    auto_error=False,
    scheme_name="EventsBasic",
    description="Any user name with API_KEYS' or EVENTS_TOKEN's value as the password: for senders that "
    "can only put credentials in the URL (an SNS subscription, https://events:TOKEN@host/...)",
)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_pipeline(request: Request) -> CaptionPipeline:
    return _services(request).pipeline


async def get_captions(request: Request) -> CaptionService:
    return _services(request).captions


async def get_catalogue(request: Request) -> Catalogue:
    return _services(request).catalogue


async def get_events(request: Request) -> EventIntake:
    events: Events = request.app.state.events
    return events.intake


async def get_review(request: Request) -> ReviewService:
    return _services(request).review


async def get_thumbnails(request: Request) -> Thumbnails:
    return _services(request).thumbnails


async def get_metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


async def get_warmup(request: Request) -> VocabularyWarmup:
    return _services(request).warmup


SettingsDep = Annotated[Settings, Depends(get_settings)]
PipelineDep = Annotated[CaptionPipeline, Depends(get_pipeline)]
CaptionsDep = Annotated[CaptionService, Depends(get_captions)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
WarmupDep = Annotated[VocabularyWarmup, Depends(get_warmup)]
EventsDep = Annotated[EventIntake, Depends(get_events)]
ReviewDep = Annotated[ReviewService, Depends(get_review)]
ThumbnailsDep = Annotated[Thumbnails, Depends(get_thumbnails)]


async def require_api_key(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    keys = settings.api_key_list
    if keys and not _matches(credentials.credentials if credentials else "", keys):
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})


async def require_events_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_events_bearer)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_events_basic)],
) -> None:
    """POST /v1/events/s3: a key of API_KEYS or EVENTS_TOKEN, as a Bearer token or a Basic password;
    open only when neither is set, like /caption without API_KEYS."""
    keys = settings.events_key_list
    offered = bearer.credentials if bearer else basic.password if basic else ""
    if keys and not _matches(offered, keys):
        # SNS sends the credentials of its URL only when challenged for Basic, with a realm.
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": EVENTS_CHALLENGE})


def _matches(offered: str, keys: tuple[str, ...]) -> bool:
    # Compare against every key in constant time, so timing tells nothing about which prefix matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(offered.encode(), key.encode())
    return matched


ApiKeyDep = Depends(require_api_key)
EventsKeyDep = Depends(require_events_key)
