"""Generated test images: every format and every failure the gateway must handle."""

from __future__ import annotations

import io
import struct
import zlib

import pillow_heif
from PIL import Image, ImageFilter

RED = (220, 30, 30)
BLUE = (30, 30, 220)
GREEN = (30, 200, 30)


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def jpeg_rotated() -> bytes:
    """Stored 400x200, red left half and blue right; EXIF orientation 6 shows it 200x400, red on top."""
    image = Image.new("RGB", (400, 200), BLUE)
    image.paste(RED, (0, 0, 200, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(image, "JPEG", quality=95, exif=exif.tobytes())


def jpeg_cmyk() -> bytes:
    return _save(Image.new("CMYK", (300, 200), (0, 255, 255, 0)), "JPEG", quality=95)  # red in CMYK


def png_alpha() -> bytes:
    image = Image.new("RGBA", (300, 200), (0, 0, 0, 0))  # transparent black: must become white
    image.paste((*GREEN, 255), (0, 0, 150, 200))
    return _save(image, "PNG")


def webp() -> bytes:
    return _save(Image.new("RGB", (320, 240), GREEN), "WEBP", quality=90)


def gif_animated() -> bytes:
    frames = [Image.new("RGB", (200, 200), color).convert("P") for color in (GREEN, BLUE)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def heic() -> bytes:
    heif = pillow_heif.from_pillow(Image.new("RGB", (320, 240), BLUE))
    out = io.BytesIO()
    heif.save(out, quality=90)
    return out.getvalue()


def avif() -> bytes:
    return _save(Image.new("RGB", (320, 240), RED), "AVIF", quality=90)


def bmp() -> bytes:
    return _save(Image.new("RGB", (64, 48), RED), "BMP")


def tiff() -> bytes:
    return _save(Image.new("RGB", (64, 48), BLUE), "TIFF")


def photo(width: int, height: int, quality: int = 92, blur: float = 0.0) -> bytes:
    """A JPEG with detail (a gradient and noise), so its size and decode cost are photo-like.

    Plain noise is the worst case for a JPEG decoder (24 MP: ~19.5 MB); ``blur=1`` softens it to the
    entropy of a camera photo (24 MP: ~6.4 MB).
    """
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 64)
    if blur:
        noise = noise.filter(ImageFilter.GaussianBlur(blur))
    image = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    return _save(image, "JPEG", quality=quality)


def pixel_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels: refused before any decoding."""
    png = bytearray(_save(Image.new("1", (8, 8)), "PNG"))
    ihdr = png.index(b"IHDR")
    png[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(png[ihdr : ihdr + 17]))
    png[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(png)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bilevel_png(width: int = 9_999, height: int = 9_999) -> bytes:
    """A 1-bit PNG, black with a white frame 200 px wide: ~12 KB on disk, 100 MP once decoded."""
    row_bytes = (width + 7) // 8
    frame, edge = b"\x00" + b"\xff" * row_bytes, 200
    middle = b"\x00" + b"\xff" * (edge // 8) + b"\x00" * (row_bytes - 2 * (edge // 8)) + b"\xff" * (edge // 8)
    raw = b"".join(frame if y < edge or y >= height - edge else middle for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 9))
        + _png_chunk(b"IEND", b"")
    )


def rgba_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGBA pixels (its data is one empty row): refused
    from the header when decoding would take too much memory."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    one_row = zlib.compress(b"\x00" * (1 + 4 * width))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", one_row)
        + _png_chunk(b"IEND", b"")
    )


def long_strip(width: int = 20_000, height: int = 10) -> bytes:
    """A JPEG far beyond Qwen2.5-VL's 200:1 aspect limit: a dark band."""
    return _save(Image.new("RGB", (width, height), (20, 20, 20)), "JPEG", quality=95)


def truncated_jpeg() -> bytes:
    whole = photo(640, 480)
    return whole[: len(whole) // 2]


NOT_AN_IMAGE = b"this is a text file wearing a .jpg name\n" * 10


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)


def icc_swapped_red_green() -> bytes:
    """A matrix/TRC RGB ICC profile whose red and green colorants are swapped.

    A pixel stored as red in this colour space is green in sRGB, so a test can see whether the gateway
    converted through the embedded profile (it comes out green) or ignored it (it stays red).
    """
    description = b"Swapped red-green test profile\0"
    gamma = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, 0x0233) + b"\0\0"  # gamma 2.2
    tags = {
        b"desc": b"desc" + b"\0" * 4 + struct.pack(">I", len(description)) + description + b"\0" * 79,
        b"wtpt": _xyz_tag(0.9642, 1.0, 0.8249),
        b"rXYZ": _xyz_tag(0.3851, 0.7169, 0.0971),  # sRGB's green colorant (D50)
        b"gXYZ": _xyz_tag(0.4361, 0.2225, 0.0139),  # sRGB's red colorant (D50)
        b"bXYZ": _xyz_tag(0.1431, 0.0606, 0.7141),
        b"rTRC": gamma,
        b"gTRC": gamma,
        b"bTRC": gamma,
        b"cprt": b"text" + b"\0" * 4 + b"public domain\0\0\0",
    }
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags.items():
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = struct.pack(">I4sI4s4s4s", size, b"lcms", 0x02100000, b"mntr", b"RGB ", b"XYZ ")
    header += b"\0" * 12 + b"acsp" + b"APPL" + b"\0" * 24 + b"\0" * 4
    header += _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"lcms"
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + data


def jpeg_wide_gamut() -> bytes:
    """Stored red under a profile that makes it green: only a profile-aware conversion shows green."""
    return _save(Image.new("RGB", (300, 200), RED), "JPEG", quality=95, icc_profile=icc_swapped_red_green())


def png_wide_gamut_alpha() -> bytes:
    image = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    image.paste((*RED, 255), (0, 0, 150, 200))
    return _save(image, "PNG", icc_profile=icc_swapped_red_green())


def jpeg_broken_exif() -> bytes:
    """Orientation 6 in an EXIF block with three corrupted bytes (found by fuzzing): reading the
    orientation works, but rewriting the block, as ImageOps.exif_transpose does, raises struct.error."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera maker"
    exif[0x0132] = "2024:01:01 00:00:00"
    raw = bytearray(exif.tobytes())
    for index, value in ((17, 33), (44, 100), (69, 141)):
        raw[index] = value
    return _save(Image.new("RGB", (40, 20), BLUE), "JPEG", quality=95, exif=bytes(raw))


def xmp_packet(title: str | None = None, keywords: tuple[str, ...] = (), city: str | None = None) -> bytes:
    """An XMP packet as Lightroom writes one: dc:title (Lang Alt), dc:subject (Bag), photoshop:City."""
    from xml.sax.saxutils import escape

    items = "".join(f"<rdf:li>{escape(k)}</rdf:li>" for k in keywords)
    parts = [f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>" if keywords else ""]
    if title is not None:
        parts.append(
            f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{escape(title)}</rdf:li></rdf:Alt></dc:title>'
        )
    city_attr = f' photoshop:City="{escape(city)}"' if city else ""
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        f'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"{city_attr}>{"".join(parts)}</rdf:Description>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


def jpeg_with_metadata(
    *, date: str | None = "2019:06:14 15:30:00", gps: bool = True, xmp: bytes | None = None
) -> bytes:
    """A camera JPEG: EXIF DateTimeOriginal, GPS (the Eiffel Tower: 48.8584 N, 2.2945 E) and an XMP packet."""
    exif = Image.Exif()
    if date:
        exif[0x8769] = {0x9003: date}  # Exif IFD: DateTimeOriginal
    if gps:
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.24), 3: "E", 4: (2.0, 17.0, 40.2)}
    params: dict[str, object] = {"exif": exif.tobytes()}
    if xmp is not None:
        params["xmp"] = xmp
    return _save(Image.new("RGB", (320, 240), BLUE), "JPEG", quality=90, **params)
