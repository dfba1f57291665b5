"""POST /caption with ``multipart/form-data``: the image as the ``file`` part, the caption's fields as form
fields (``curl -F file=@photo.jpg -F style=short ...``).

The body is parsed as it streams by python-multipart's push parser (the parser Starlette itself uses), fed
chunk by chunk, rather than by Starlette's form reader, which would spool the whole upload first. So the
``MAX_IMAGE_BYTES`` cap holds while the upload arrives (an oversized one is refused with 413 at the first
byte past the cap, the rest never read), the first bytes are sniffed as an image, and the upload holds one
of the pipeline's image slots from before its first byte.
"""

from __future__ import annotations

import hashlib

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.api.inputs import ENVELOPE_BYTES, CaptionBody
from gateway.api.schemas import IMAGE_FIELDS, CaptionFields
from gateway.errors import ImageTooLarge, InvalidInput, UnsupportedImage
from gateway.imaging import SNIFF_BYTES, identify_format
from gateway.pipeline import CaptionPipeline
from gateway.sources.held import HeldImage

FILE_FIELD = "file"
FIELD_MAX_BYTES = 16 * 1024
MAX_PARTS = 32


class _Form:
    """What the parser's callbacks collect: the form fields, and the one file with its running SHA-256."""

    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.file: bytearray | None = None
        self.digest = hashlib.sha256()
        self.ended = False
        self._parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._field: bytearray | None = None
        self._name = ""
        self._in_file = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidInput(f"more than {MAX_PARTS} form parts", code="invalid_upload")
        self._disposition = b""

    def _header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise InvalidInput("a form part without a name", code="invalid_upload")
        if name == FILE_FIELD:
            if self.file is not None:
                raise InvalidInput("send one image: a second `file` part", code="invalid_upload")
            self.file, self._in_file = bytearray(), True
        elif name in self.fields:
            raise InvalidInput(f"the form field {name[:64]!r} is sent twice", code="invalid_upload")
        else:
            self._field, self._name = bytearray(), name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            assert self.file is not None
            self.file += memoryview(data)[start:end]
            self.digest.update(data[start:end])
            if len(self.file) > self.max_file_bytes:
                raise ImageTooLarge(
                    f"the upload exceeds {self.max_file_bytes} bytes (MAX_IMAGE_BYTES); the rest was not read"
                )
            if len(self.file) >= SNIFF_BYTES and len(self.file) - (end - start) < SNIFF_BYTES:
                _sniff(bytes(self.file[:SNIFF_BYTES]))
        elif self._field is not None:
            self._field += data[start:end]
            if len(self._field) > FIELD_MAX_BYTES:
                raise InvalidInput(
                    f"form field {self._name[:64]!r} exceeds {FIELD_MAX_BYTES} bytes "
                    "(send an image as `file`)",
                    code="invalid_upload",
                )

    def _part_end(self) -> None:
        if self._in_file:
            assert self.file is not None
            if 0 < len(self.file) < SNIFF_BYTES:
                _sniff(bytes(self.file))
            self._in_file = False
        elif self._field is not None:
            self.fields[self._name] = self._field.decode("utf-8", "replace")
            self._field = None

    def _end(self) -> None:
        self.ended = True


def _sniff(head: bytes) -> None:
    if identify_format(head) is None:
        raise UnsupportedImage(
            "the uploaded file is not an image in a supported format (JPEG, PNG, WebP, GIF, BMP, TIFF, "
            "HEIC/HEIF, AVIF), by its first bytes",
            code="unsupported_image",
        )


def _boundary(request: Request) -> bytes:
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary", b"")
    if not boundary or len(boundary) > 200:
        raise InvalidInput("multipart/form-data needs a boundary", code="invalid_upload")
    return boundary


async def read_upload(request: Request, pipeline: CaptionPipeline, max_image_bytes: int) -> CaptionBody:
    boundary = _boundary(request)
    cap = max_image_bytes + ENVELOPE_BYTES
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        raise ImageTooLarge(f"the upload is {length} bytes; the limit is {max_image_bytes} (MAX_IMAGE_BYTES)")
    lease = await pipeline.lease()  # before the first byte: the upload is an image arriving
    try:
        form = await _parse(request, boundary, max_image_bytes, cap)
        if form.file is None:
            raise InvalidInput("a multipart upload sends its image as the `file` part", code="invalid_upload")
        fields = _fields(form.fields)
        data, form.file = bytes(form.file), None
        held = HeldImage(data, form.digest.hexdigest(), lease)
    except BaseException:
        lease.release()
        raise
    return CaptionBody(fields.to_request(image=held), fields.refresh)


async def _parse(request: Request, boundary: bytes, max_image_bytes: int, cap: int) -> _Form:
    form = _Form(max_image_bytes)
    parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > cap:
                raise ImageTooLarge(f"the upload exceeds {cap} bytes (MAX_IMAGE_BYTES and its form fields)")
            parser.write(chunk)
    except ValueError as exc:  # python-multipart's MultipartParseError
        raise InvalidInput(f"a malformed multipart body: {exc}", code="invalid_upload") from None
    if not form.ended:
        raise InvalidInput("the multipart body ended before its closing boundary", code="invalid_upload")
    return form


def _fields(fields: dict[str, str]) -> CaptionFields:
    named = [name for name in IMAGE_FIELDS if name in fields]
    if named:
        raise InvalidInput(f"an upload's image is its `file` part; do not also send {', '.join(named)}")
    try:
        # An empty field is a field not sent: HTML forms send every input, filled in or not.
        return CaptionFields.model_validate({k: v for k, v in fields.items() if v != ""})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
