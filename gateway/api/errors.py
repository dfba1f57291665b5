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
MESSAGE_MAX_CHARS = 1000

# (status, OpenAI-style error type) per error class; the most specific class wins.
_STATUS: list[tuple[type[errors.GatewayError], int, str]] = [
    (errors.InvalidInput, 422, "invalid_request_error"),
    (errors.CaptionNotFound, 404, "not_found_error"),
    (errors.ReviewConflict, 409, "conflict_error"),
    (errors.CatalogueUnavailable, 503, "service_unavailable_error"),
    (errors.Overloaded, 429, "rate_limit_error"),
    (errors.ImageTooLarge, 413, "request_too_large_error"),
    (errors.RequestTooLarge, 413, "request_too_large_error"),
    (errors.BodyTooSlow, 408, "timeout_error"),
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
RETRY_AFTER_STATUSES = frozenset({429, 503})
# FastAPI answers 400 when a body is not JSON it can decode (not UTF-8, nested ~1,000 deep): for the client
# that is the same mistake as malformed JSON, which is a 422.
BODY_NOT_PARSED = "the request body is not JSON that can be parsed (it must be UTF-8, nested < 1,000 deep)"


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


def gateway_error_response(exc: errors.GatewayError) -> JSONResponse:
    status, kind = status_of(exc)
    retry = exc.retry_after and status in RETRY_AFTER_STATUSES
    headers = {"Retry-After": str(math.ceil(exc.retry_after or 0))} if retry else None
    return error_response(status, exc.message, kind, exc.code, headers)


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.GatewayError)
    return gateway_error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    message = "; ".join(problems) or "invalid request"
    if len(message) > MESSAGE_MAX_CHARS:  # many problems, or a field name the client made up
        message = message[:MESSAGE_MAX_CHARS] + "..."
    return error_response(422, message, "invalid_request_error", "invalid_request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        return error_response(422, BODY_NOT_PARSED, "invalid_request_error", "invalid_request")
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


def _declared(descriptions: dict[int, str]) -> dict[int | str, dict[str, object]]:
    return {status: {"model": ErrorEnvelope, "description": text} for status, text in descriptions.items()}


# What any request can be answered before a route runs (server.py's protocol, guard.py): on every operation.
SERVER_RESPONSES = _declared(
    {
        400: "Not a valid HTTP/1.1 request (the connection is closed)",
        408: "The request headers or body did not arrive in time (CLIENT_HEADER_/CLIENT_BODY_TIMEOUT_S)",
        413: "The request body is over MAX_REQUEST_BYTES",
        431: "The request headers are over 64 KiB (the connection is closed)",
    }
)
# What a route that takes a body can answer besides (FastAPI's parsing).
FRONT_DOOR_RESPONSES = _declared({422: "Malformed body or parameters"})
PROTECTED_RESPONSES = _declared({401: "Missing or wrong API key (when API_KEYS is set)"})
CAPTION_RESPONSES = _declared(
    {
        403: "S3 refused access: a credentials or permission problem",
        404: "No such S3 bucket or key, or no catalogue entry with that id",
        413: "The request body is over MAX_REQUEST_BYTES (an upload over MAX_IMAGE_BYTES, refused as soon as "
        "it passes the cap), or the image has too many bytes or pixels, or would take more than "
        "MAX_DECODE_BYTES to decode",
        415: "Not an image (an upload or a URL's content sniffed), an unsupported format, truncated or empty",
        422: "Malformed body or query: not exactly one image, bad s3_uri, base64 or upload, an image URL the "
        "gateway will not fetch (image_url_forbidden, image_url_disabled), bad style, language, vocabulary, "
        "reasoning level or cursor",
        429: "Overloaded: MAX_INFLIGHT requests at work and MAX_QUEUED waiting (see Retry-After)",
        500: "A bug in the gateway; the log has the traceback under the same request id",
        502: "The VLM refused the request or answered something unusable; an image URL's server unreachable, "
        "answering an error or redirecting too often",
        503: "S3, the VLM, the catalogue or the gateway itself unavailable or overloaded (see Retry-After)",
        504: "The VLM did not answer within VLM_TIMEOUT_S; an image URL within IMAGE_URL_TIMEOUT_S",
    }
)
# Everything POST /caption (and the catalogue's routes) can answer; 401 is declared where a route is
# included with the key (routes.include_routers), so only when API_KEYS is set.
ERROR_RESPONSES = {**SERVER_RESPONSES, **FRONT_DOOR_RESPONSES, **CAPTION_RESPONSES}
# Only the review routes answer 409: declared on them, not on every route.
REVIEW_RESPONSES: dict[int | str, dict[str, object]] = {
    **ERROR_RESPONSES,
    409: {
        "model": ErrorEnvelope,
        "description": "The entry's state does not allow this (a write-back retry of an unapproved entry)",
    },
}
