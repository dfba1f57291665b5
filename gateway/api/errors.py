"""One error envelope for every error, ``{"error": {"message", "type", "code"}}``, mapped here once."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import errors

log = logging.getLogger("gateway.errors")

# (status, OpenAI-style error type) per error class; the most specific class wins.
_STATUS: list[tuple[type[errors.GatewayError], int, str]] = [
    (errors.InvalidInput, 422, "invalid_request_error"),
    (errors.CaptionNotFound, 404, "not_found_error"),
    (errors.ReviewConflict, 409, "conflict_error"),
    (errors.CatalogueUnavailable, 503, "service_unavailable_error"),
    (errors.ImageTooLarge, 413, "request_too_large_error"),
    (errors.RequestTooLarge, 413, "request_too_large_error"),
    (errors.UnsupportedImage, 415, "unsupported_media_type_error"),
    (errors.ObjectNotFound, 404, "not_found_error"),
    (errors.AccessDenied, 403, "permission_error"),
    (errors.SourceUnavailable, 503, "service_unavailable_error"),
    (errors.GatewayBusy, 503, "service_unavailable_error"),
    (errors.ImageUrlFailed, 502, "bad_gateway_error"),
    (errors.ImageUrlTimeout, 504, "timeout_error"),
    (errors.BackendUnavailable, 503, "service_unavailable_error"),
    (errors.BackendTimeout, 504, "timeout_error"),
    (errors.BackendBadResponse, 502, "bad_gateway_error"),
]
_HTTP_TYPES = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error"}


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str


class ErrorEnvelope(BaseModel):
    error: ErrorDetail


def status_of(exc: errors.GatewayError) -> tuple[int, str]:
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "internal_error"


def error_response(
    status: int, message: str, kind: str, code: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorEnvelope(error=ErrorDetail(message=message, type=kind, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.GatewayError)
    status, kind = status_of(exc)
    headers = {"Retry-After": str(math.ceil(exc.retry_after))} if exc.retry_after and status == 503 else None
    return error_response(status, exc.message, kind, exc.code, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(
        422, "; ".join(problems) or "invalid request", "invalid_request_error", "invalid_request"
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
    code = str(exc.detail).lower().replace(" ", "_") if exc.status_code != 401 else "invalid_api_key"
    return error_response(exc.status_code, str(exc.detail), kind, code, dict(exc.headers or {}) or None)


def internal_error_response() -> JSONResponse:
    """A bug, not a user error: the envelope without internals; the log has the traceback."""
    return error_response(500, "internal error; see the gateway's log", "internal_error", "internal_error")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Only reached for errors outside RequestContextMiddleware, which answers the others itself.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return internal_error_response()


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in {
        401: "Missing or wrong API key (when API_KEYS is set)",
        403: "S3 refused access: a credentials or permission problem",
        404: "No such S3 bucket or key, or no catalogue entry with that id",
        413: "The image has too many bytes or pixels (an upload is refused as soon as it passes the cap)",
        415: "Not an image (an upload or a URL's content sniffed), an unsupported format, truncated or empty",
        422: "Malformed body or query: not exactly one image, bad s3_uri, base64 or upload, an image URL the "
        "gateway will not fetch (image_url_forbidden, image_url_disabled), bad style, language, vocabulary, "
        "reasoning level or cursor",
        502: "The VLM refused the request or answered something unusable; an image URL's server unreachable, "
        "answering an error or redirecting too often",
        503: "S3, the VLM, the catalogue or the gateway itself unavailable or overloaded (see Retry-After)",
        504: "The VLM did not answer within VLM_TIMEOUT_S; an image URL within IMAGE_URL_TIMEOUT_S",
    }.items()
}
# Only the review routes answer 409: declared on them, not on every route.
REVIEW_RESPONSES: dict[int | str, dict[str, object]] = {
    **ERROR_RESPONSES,
    409: {
        "model": ErrorEnvelope,
        "description": "The entry's state does not allow this (a write-back retry of an unapproved entry)",
    },
}
