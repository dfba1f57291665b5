"""XMP sidecars through python-xmp-toolkit (Exempi, i.e. Adobe's XMP Core): the one module using it.

Chosen over pyexiv2, whose wheel needs no system library but writes every array as rdf:Seq: dc:subject is
an unordered rdf:Bag in the Dublin Core schema, and Adobe's tools and DAMs read the schema's types. Exempi
comes from the OS (Debian: libexempi8), so the import is lazy and its absence is a clear error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.errors import GatewayError, XmpUnavailable

CREATOR_TOOL = "florence-tagger"


def require_libxmp() -> Any:
    try:
        import libxmp  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except Exception as exc:  # ImportError, or ExempiLoadError when libexempi is missing
        raise XmpUnavailable(
            "--write-back xmp needs python-xmp-toolkit and the Exempi library: "
            "pip install 'florence-tagger[batch]' and apt-get install libexempi8"
            f" ({type(exc).__name__}: {exc})"
        ) from None
    return libxmp


def build_xmp(
    caption: str, keywords: list[str], *, language: str | None = None, existing: bytes | None = None
) -> bytes:
    """The caption in dc:description, the keywords in dc:subject, merged into an existing sidecar.

    A sidecar may already hold a user's edits (darktable's history, digiKam's ratings): everything but
    the two fields we own survives.
    """
    libxmp = require_libxmp()
    dc = libxmp.consts.XMP_NS_DC
    try:
        meta = libxmp.XMPMeta(xmp_str=existing.decode("utf-8")) if existing else libxmp.XMPMeta()
    except (UnicodeDecodeError, libxmp.XMPError) as exc:
        raise GatewayError(f"the existing XMP sidecar is not valid XMP: {exc}", code="xmp_invalid") from None
    meta.delete_property(dc, "description")
    meta.set_localized_text(dc, "description", "x-default", "x-default", caption)
    if language and language != "x-default":
        meta.set_localized_text(dc, "description", language, language, caption)
    meta.delete_property(dc, "subject")
    for keyword in keywords:
        meta.append_array_item(dc, "subject", keyword, {"prop_array_is_unordered": True})
    meta.set_property(libxmp.consts.XMP_NS_XMP, "CreatorTool", CREATOR_TOOL)
    meta.set_property(libxmp.consts.XMP_NS_XMP, "MetadataDate", datetime.now(UTC).isoformat())
    return str(meta.serialize_to_str(omit_packet_wrapper=False)).encode("utf-8")
