"""POST /caption's request body, read by hand rather than by FastAPI: JSON that names one image (``s3_uri``,
``image_url``, ``image_base64``) or a multipart upload (``uploads.py``).

FastAPI would read a whole body before the handler runs; here every body is read with a cap while it
streams, and a body that can only be an image's bytes (a JSON body past ``SLOT_ABOVE_BYTES``, any upload)
takes one of the pipeline's image slots before more of it is read, and hands that slot on with the bytes.

A body refused part-way is answered at once and never read further here. The connection is not closed on
it: closing a socket with unread data resets it, and the client could lose the 413 it was sent. The server
(uvicorn) drops whatever of the body still arrives, without holding it, and the connection can be reused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from gateway.api.schemas import CaptionIn
from gateway.errors import ImageTooLarge, InvalidInput
from gateway.pipeline import CaptionPipeline, CaptionRequest
from gateway.sources.held import HeldImage, Lease, sha256_of
from gateway.sources.s3_uri import parse_s3_uri

ENVELOPE_BYTES = 64 * 1024  # the caption's fields, a prompt of 1,000 characters, JSON or form syntax
SLOT_ABOVE_BYTES = 64 * 1024  # a JSON body larger than this is carrying an image
DECODE_IN_THREAD_CHARS = 1 << 20


@dataclass(frozen=True)
class CaptionBody:
    request: CaptionRequest
    refresh: bool


def base64_cap(max_image_bytes: int) -> int:
    """The longest base64 text of an image within ``MAX_IMAGE_BYTES``, padding and line breaks allowed for."""
    chars = -(-max_image_bytes // 3) * 4
    return chars + chars // 64 * 2


async def read_json(request: Request, pipeline: CaptionPipeline, max_image_bytes: int) -> CaptionBody:
    cap = base64_cap(max_image_bytes) + ENVELOPE_BYTES
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        raise ImageTooLarge(f"the JSON body is {length} bytes; the limit is {cap} (from MAX_IMAGE_BYTES)")
    lease: Lease | None = None
    try:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise ImageTooLarge(f"the JSON body exceeds {cap} bytes (from MAX_IMAGE_BYTES)")
            if lease is None and len(body) > SLOT_ABOVE_BYTES:
                lease = await pipeline.lease()  # an image is arriving: it holds a slot from here on
        return await _parsed(bytes(body), pipeline, max_image_bytes, lease)
    except BaseException:
        if lease is not None:
            lease.release()
        raise


async def _parsed(
    body: bytes, pipeline: CaptionPipeline, max_image_bytes: int, lease: Lease | None
) -> CaptionBody:
    """The body as a request; ``lease`` is released by the caller if this raises."""
    try:
        parsed = CaptionIn.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    del body
    if parsed.image_base64 is None:
        if lease is not None:
            lease.release()
        if parsed.s3_uri is not None:
            parse_s3_uri(parsed.s3_uri)  # an empty or malformed s3_uri is invalid_s3_uri, as it always was
        return CaptionBody(
            parsed.to_request(s3_uri=parsed.s3_uri or "", image_url=parsed.image_url), parsed.refresh
        )
    text, parsed.image_base64 = parsed.image_base64, None
    if lease is None:  # a small image: its slot is taken now, before it is decoded
        lease = await pipeline.lease()
        try:
            return await _decoded(text, parsed, max_image_bytes, lease)
        except BaseException:
            lease.release()
            raise
    return await _decoded(text, parsed, max_image_bytes, lease)


async def _decoded(text: str, parsed: CaptionIn, max_image_bytes: int, lease: Lease) -> CaptionBody:
    data = await decode_base64(text, max_image_bytes)
    held = HeldImage(data, await sha256_of(data), lease)
    return CaptionBody(parsed.to_request(image=held), parsed.refresh)


async def decode_base64(text: str, max_image_bytes: int) -> bytes:
    """Raw base64 or a ``data:image/...;base64,`` URL; its decoded size is checked before decoding."""
    payload = text
    if text.startswith("data:"):
        header, comma, payload = text.partition(",")
        if not comma or not header.endswith(";base64") or not header[5:].lower().startswith("image/"):
            raise InvalidInput(
                "image_base64 as a data URL must be data:image/<type>;base64,<data>",
                code="invalid_image_base64",
            )
    payload = "".join(payload.split())  # MIME-style line breaks
    payload += "=" * (-len(payload) % 4)
    size = len(payload) // 4 * 3 - payload.endswith("=") - payload.endswith("==")
    if size > max_image_bytes:
        raise ImageTooLarge(
            f"image_base64 decodes to {size} bytes; the limit is {max_image_bytes} (MAX_IMAGE_BYTES)"
        )
    try:
        if len(payload) < DECODE_IN_THREAD_CHARS:
            return base64.b64decode(payload, validate=True)
        return await asyncio.to_thread(base64.b64decode, payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "image_base64 is not valid base64 (standard alphabet, A-Z a-z 0-9 + /)",
            code="invalid_image_base64",
        ) from None
