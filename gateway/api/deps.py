"""Dependencies the routes inject: the pipeline and settings the lifespan built, and the API-key check.

All are ``async def``: FastAPI runs a plain ``def`` dependency in a thread pool, a thread hop per
dependency per request for what is an attribute read.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.caching import CaptionService
from gateway.catalogue import Catalogue
from gateway.metrics import GatewayMetrics
from gateway.pipeline import CaptionPipeline
from gateway.settings import Settings
from gateway.warmup import VocabularyWarmup
from gateway.wiring import Services

_bearer = HTTPBearer(auto_error=False, description="One of API_KEYS, when that setting is set")


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


async def require_api_key(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    keys = settings.api_key_list
    if not keys:
        return
    offered = credentials.credentials.encode() if credentials else b""
    # Compare against every key in constant time, so timing tells nothing about which prefix matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(offered, key.encode())
    if not matched:
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})


ApiKeyDep = Depends(require_api_key)
