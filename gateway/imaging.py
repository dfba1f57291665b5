"""Image preparation: the only module that touches Pillow.

Validate, orient, convert to sRGB RGB, fit the VLM's pixel budget on Qwen2.5-VL's 28-px grid and encode
as JPEG. Three levers keep it cheap (issue 5): a JPEG decoder asked for a reduced size (DCT scaling), a
resize with ``reducing_gap``, and no work at all for a JPEG that already fits: its bytes go through as
they are once a reduced decode has proven the stream whole.

Memory (issue 14): an image is refused when its decode alone would take more than ``MAX_DECODE_BYTES``
(pixels times the bytes per pixel of its own mode: a 1-bit PNG costs a quarter of an RGB one). A large
image is reduced strip by strip, each strip converted to RGB only as it is reduced, so a 100 MP bilevel
scan never becomes a 400 MB RGB copy; and after a large image the C heap is trimmed, so the memory goes
back to the system instead of staying with the process.

Shape: Qwen2.5-VL's processor refuses aspect ratios over 200:1. A longer, thinner image is padded (white)
to 200:1, so the caption still describes all of it.

Everything here is synchronous CPU work; ``ImagePreparer`` runs it in a thread, except the check of a small
JPEG that is forwarded as it is, which costs less than the hop to a thread and back.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import io
import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import pillow_heif
from PIL import Image, ImageCms, IptcImagePlugin, UnidentifiedImageError

from gateway.errors import ImageTooLarge, UnsupportedImage
from gateway.geometry import MAX_ASPECT_RATIO, PixelBudget, fit_for_vlm, ratio
from gateway.geometry import PATCH as PATCH  # re-exported: callers size images with it
from gateway.geometry import fit_to_grid as fit_to_grid

# HEIC/HEIF come from pillow-heif; AVIF is Pillow's own. Registering an opener is idempotent.
pillow_heif.register_heif_opener()

SNIFF_BYTES = 16  # what Image.open reads to identify a format
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")
JPEG_QUALITY = 92
PAD_COLOUR = (255, 255, 255)
REDUCING_GAP = 3.0
STRIP_PIXELS = 1 << 22  # ~16 MB of RGB per strip while a large image is reduced
TRIM_ABOVE_BYTES = 32 << 20  # after decodes larger than this, hand freed memory back to the system
THUMBNAIL_QUALITY = 82  # a preview for people, not input for the VLM: smaller files matter more
# A pass-through JPEG this small is checked on the event loop: its reduced decode reads at most this many
# bytes (well under a millisecond), where a thread hop costs a future, a wake-up of the loop and, when the
# loop is busy, milliseconds of queueing for the result.
INLINE_MAX_BYTES = 256 * 1024
ORIENTATION_TAG = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATE_TIME_ORIGINAL, DATE_TIME = 0x9003, 0x0132
log = logging.getLogger("gateway.imaging")
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class RawMetadata:
    """The image's own metadata as Pillow reads it, in plain Python types (``gateway.metadata`` reads it)."""

    exif_date: str | None = None
    gps: dict[int, Any] = field(default_factory=dict)  # GPS IFD: tag -> value (rationals as floats)
    xmp: dict[str, Any] = field(default_factory=dict)  # Image.getxmp(): namespaces stripped
    iptc: dict[tuple[int, int], bytes | list[bytes]] = field(default_factory=dict)  # IPTC IIM datasets


@dataclass(frozen=True)
class PreparedImage:
    jpeg: bytes
    width: int
    height: int
    passed_through: bool
    metadata: RawMetadata | None = None  # read only when asked (context): no cost otherwise


def identify_format(head: bytes) -> str | None:
    """The accepted format whose signature ``head`` (the first ``SNIFF_BYTES`` bytes) carries, or None.

    Pillow's own identification: each format plugin's ``accept`` test on the bytes ``Image.open`` looks at
    first. It runs before a download or an upload has been read whole, so a page of HTML sent for an image is
    refused after 16 bytes rather than 20 MB; the full decode later still has the last word."""
    Image.init()
    for name in ACCEPTED_FORMATS:
        accept = Image.OPEN.get(name, (None, None))[1]
        result = accept(head) if accept is not None else False
        if result and not isinstance(result, str):  # a string is Pillow's "recognised, but unsupported"
            return name
    return None


def prepare_image(data: bytes, budget: PixelBudget, read_metadata: bool = False) -> PreparedImage:
    prepared = _prepare(data, budget, read_metadata, decode=True)
    assert prepared is not None  # decode=True always prepares
    return prepared


def pass_through_image(data: bytes, budget: PixelBudget, read_metadata: bool = False) -> PreparedImage | None:
    """``prepare_image`` when the image goes through as it is (an in-budget sRGB JPEG); None when it must
    be decoded and re-encoded. Refuses bad input exactly as ``prepare_image`` does."""
    return _prepare(data, budget, read_metadata, decode=False)


def _prepare(data: bytes, budget: PixelBudget, read_metadata: bool, *, decode: bool) -> PreparedImage | None:
    with _opened(data, budget) as image:
        # Read from the bytes already in memory, before decoding: no second download, no extra decode.
        metadata = raw_metadata(image) if read_metadata else None
        prepared = _prepare_open(image, data, budget, decode)
        return prepared if metadata is None or prepared is None else _with(prepared, metadata)


def make_thumbnail(data: bytes, size: int, budget: PixelBudget) -> bytes:
    """A JPEG preview whose longer side is at most ``size`` pixels, upright and in sRGB, for the review
    page. The same checks as a caption's image (``budget.max_source_pixels`` from the header)."""
    with _opened(data, budget) as image:
        orientation = _orientation(image)
        if image.format in ("JPEG", "MPO"):
            image.draft(image.mode, (size, size))  # DCT scaling: a 24 MP photo decodes at 1/8 size
        image.load()
        rgb = _to_srgb_rgb(_upright(image, orientation))
        rgb.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return _encode_jpeg(rgb, THUMBNAIL_QUALITY)


@contextmanager
def _opened(data: bytes, budget: PixelBudget) -> Iterator[Image.Image]:
    """The image, header-checked; whatever its decoding raises is mapped to the gateway's errors."""
    if not data:
        raise UnsupportedImage("the object is empty (0 bytes)", code="image_empty")
    image = _open(data, budget)
    try:
        yield image
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc), code="image_too_many_pixels") from None
    except ImageTooLarge:
        raise  # our own refusal (the decode would take too much memory), not a broken file
    except MemoryError:
        raise  # the gateway's trouble, not the file's
    except Exception as exc:
        # Pillow reports truncated and corrupt streams as OSError, and malformed metadata as struct.error,
        # TypeError, KeyError...: whatever a broken file raises, it is the file's fault, a 415, not a 500.
        raise UnsupportedImage(f"the image could not be decoded: {exc}", code="image_corrupt") from None
    finally:
        image.close()
        if _decode_bytes(image) > TRIM_ABOVE_BYTES:
            _give_memory_back()  # the decoded pixels and their copies are free by now


def _open(data: bytes, budget: PixelBudget) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc), code="image_too_many_pixels") from None
    except UnidentifiedImageError:
        raise UnsupportedImage(
            f"not an image in a supported format ({', '.join(ACCEPTED_FORMATS)})", code="unsupported_image"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedImage(f"the image header could not be read: {exc}", code="image_corrupt") from None
    # The header is enough to refuse a decompression bomb: nothing has been decoded yet.
    if image.width * image.height > budget.max_source_pixels:
        image.close()
        raise ImageTooLarge(
            f"the image is {image.width}x{image.height} = {image.width * image.height} pixels; "
            f"the limit is {budget.max_source_pixels} (MAX_IMAGE_PIXELS)",
            code="image_too_many_pixels",
        )
    return image


def _prepare_open(image: Image.Image, data: bytes, budget: PixelBudget, decode: bool) -> PreparedImage | None:
    stored_size = image.size  # the draft decode below changes image.size
    orientation = _orientation(image)
    canvas, content = fit_for_vlm(*_upright_size(image.size, orientation), budget)
    if canvas == content and _can_pass_through(image, orientation, budget):
        _prove_whole(image)  # a reduced decode: ``image.size`` is the draft's now, not the forwarded JPEG's
        return PreparedImage(data, *stored_size, passed_through=True)
    if not decode:
        return None
    stored_target = _upright_size(content, orientation)
    if image.format in ("JPEG", "MPO"):
        # DCT scaling: decode at 1/2, 1/4 or 1/8 size, never below the target (no upsampling artefacts).
        image.draft(image.mode, stored_target)
    _check_decode_memory(image, budget)
    image.load()
    rgb = _upright(_reduced_rgb(image, stored_target), orientation)
    if rgb.size != content:
        rgb = rgb.resize(content, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    if canvas != content:
        rgb = _pad(rgb, canvas)
    return PreparedImage(_encode_jpeg(rgb), *canvas, passed_through=False)


def _decode_bytes(image: Image.Image) -> int:
    """The bytes Pillow holds for ``image`` decoded (at its draft size, for a JPEG)."""
    return image.width * image.height * _pixel_bytes(image.mode)


def _check_decode_memory(image: Image.Image, budget: PixelBudget) -> None:
    needed = _decode_bytes(image)
    if needed > budget.max_decode_bytes:
        raise ImageTooLarge(
            f"decoding this {image.width}x{image.height} {image.mode} image would take {needed >> 20} MB; "
            f"the limit is {budget.max_decode_bytes >> 20} MB (MAX_DECODE_BYTES)",
            code="image_decode_too_large",
        )


def _pixel_bytes(mode: str) -> int:
    # How Pillow stores a pixel: one byte for bilevel, grey and palette images, two for 16-bit grey, four
    # for everything else (RGB is stored as RGBX).
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _reduced_rgb(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """sRGB RGB at most ``REDUCING_GAP`` times ``target``, converted strip by strip when reducing, so the
    RGB copy of a large image never exists whole (a bilevel or palette image is 1/4 the size of its RGB)."""
    fx = max(1, int(image.width / target[0] / REDUCING_GAP))
    fy = max(1, int(image.height / target[1] / REDUCING_GAP))
    if fx == 1 and fy == 1:
        return _to_srgb_rgb(image)
    rows = max(fy, STRIP_PIXELS // image.width // fy * fy)  # a multiple of fy: strips reduce exactly
    reduced = Image.new("RGB", (math.ceil(image.width / fx), math.ceil(image.height / fy)))
    for top in range(0, image.height, rows):
        strip = image.crop((0, top, image.width, min(image.height, top + rows)))
        reduced.paste(_to_srgb_rgb(strip).reduce((fx, fy)), (0, top // fy))
    return reduced


def _pad(image: Image.Image, canvas: tuple[int, int]) -> Image.Image:
    padded = Image.new("RGB", canvas, PAD_COLOUR)
    padded.paste(image, ((canvas[0] - image.width) // 2, (canvas[1] - image.height) // 2))
    return padded


@lru_cache(maxsize=1)
def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        return None


def _give_memory_back() -> None:
    """glibc keeps freed blocks in its arenas (one per thread) for reuse: after a 650 MB decode the process
    stayed 650 MB large. ``malloc_trim`` returns the free pages to the system."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _with(prepared: PreparedImage, metadata: RawMetadata) -> PreparedImage:
    return PreparedImage(prepared.jpeg, prepared.width, prepared.height, prepared.passed_through, metadata)


def raw_metadata(image: Image.Image) -> RawMetadata:
    """EXIF date and GPS, XMP and IPTC IIM. Metadata is optional context: a malformed block is skipped,
    never a reason to refuse an image the VLM can still describe."""
    return RawMetadata(
        exif_date=_guarded(_exif_date, image),
        gps=_guarded(_gps, image) or {},
        xmp=_guarded(_xmp, image) or {},
        iptc=_guarded(_iptc, image) or {},
    )


def _guarded(read: Any, image: Image.Image) -> Any:
    try:
        return read(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, IndexError, ZeroDivisionError) as exc:
        # SyntaxError: XML parse errors; ValueError: defusedxml's refusals (entity bombs) and bad numbers.
        log.debug("skipping unreadable metadata (%s): %s", read.__name__, exc)
        return None


def _exif_date(image: Image.Image) -> str | None:
    exif = image.getexif()
    value = exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL) or exif.get(DATE_TIME)
    return value if isinstance(value, str) else None


def _gps(image: Image.Image) -> dict[int, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(plain(v) for v in value)
        return value if isinstance(value, str | bytes | int) else float(value)  # IFDRational -> float

    return {tag: plain(value) for tag, value in image.getexif().get_ifd(GPS_IFD).items()}


def _xmp(image: Image.Image) -> dict[str, Any]:
    # Pillow parses XMP with defusedxml: the packet comes from an untrusted file (entity expansion bombs).
    return image.getxmp() if "xmp" in image.info else {}


def _iptc(image: Image.Image) -> dict[tuple[int, int], bytes | list[bytes]]:
    if image.format not in ("JPEG", "MPO", "TIFF"):
        return {}
    return IptcImagePlugin.getiptcinfo(image) or {}  # type: ignore[arg-type]


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    # Transposing by the orientation already read, rather than ImageOps.exif_transpose, which also
    # rewrites the EXIF block and raises on malformed ones.
    method = _TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def _upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    # Orientations 5-8 swap width and height.
    return (size[1], size[0]) if orientation >= 5 else size


def _can_pass_through(image: Image.Image, orientation: int, budget: PixelBudget) -> bool:
    pixels = image.width * image.height
    return (
        ratio(*image.size) <= MAX_ASPECT_RATIO  # the processor checks the size it is sent
        and image.format == "JPEG"
        and image.mode == "RGB"
        and orientation == 1
        and budget.min_pixels <= pixels <= budget.max_pixels
        and _is_srgb(image.info.get("icc_profile"))
    )


def _prove_whole(image: Image.Image) -> None:
    """A 1/8-scale decode reads the whole stream: a truncated file fails here, at a fraction of the cost."""
    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
    image.load()


def _is_srgb(icc: bytes | None) -> bool:
    if not icc:
        return True
    try:
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except (ImageCms.PyCMSError, OSError):
        return False
    return "srgb" in description.lower()


@lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb_rgb(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    image = _flatten(image)
    if icc and not _is_srgb(icc) and image.mode in ("RGB", "CMYK"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, _srgb_profile(), outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: fall back to Pillow's plain conversion below
    return image.convert("RGB") if image.mode != "RGB" else image


def _flatten(image: Image.Image) -> Image.Image:
    """No alpha and no 16-bit samples left; colours stay in the image's own colour space."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white, as most viewers show them, not black.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I;16"):
        # 16-bit greyscale: a plain convert would clip everything above 255 to white.
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image


def _encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


class ImagePreparer:
    """Runs ``prepare_image`` off the event loop, on at most ``max_threads`` images at once; a small JPEG
    that goes through as it is is checked on the loop (``INLINE_MAX_BYTES``)."""

    def __init__(self, budget: PixelBudget, max_threads: int) -> None:
        self.budget = budget
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="imaging")

    async def prepare(self, data: bytes, read_metadata: bool = False) -> PreparedImage:
        if len(data) <= INLINE_MAX_BYTES:
            passed = pass_through_image(data, self.budget, read_metadata)
            if passed is not None:
                return passed
        work = partial(prepare_image, data, self.budget, read_metadata)
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def thumbnail(self, data: bytes, size: int) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, make_thumbnail, data, size, self.budget)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
