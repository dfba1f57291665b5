"""XMP sidecars through python-xmp-toolkit (Exempi, i.e. Adobe's XMP Core): the one module using it.

Chosen over pyexiv2, whose wheel needs no system library but writes every array as rdf:Seq: dc:subject is
an unordered rdf:Bag in the Dublin Core schema, and Adobe's tools and DAMs read the schema's types. Exempi
comes from the OS (Debian: libexempi8), so the import is lazy and its absence is a clear error.

The fields, by XMP_FIELDS name (exiftool's name in brackets):
``description``      dc:description, Lang Alt                      (XMP-dc:Description)
``subject``          dc:subject, Bag of leaf keywords              (XMP-dc:Subject)
``alt_text``         Iptc4xmpCore:AltTextAccessibility, Lang Alt   (XMP-iptcCore:AltTextAccessibility)
``ext_description``  Iptc4xmpCore:ExtDescrAccessibility, Lang Alt  (XMP-iptcCore:ExtDescrAccessibility)
``headline``         photoshop:Headline, Text (no language)        (XMP-photoshop:Headline)
``hierarchical_subject``  lr:hierarchicalSubject, Bag of ``A|B|C`` (XMP-lr:HierarchicalSubject)
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.errors import GatewayError, XmpUnavailable

CREATOR_TOOL = "florence-tagger"
# Our own namespace, for the one thing no standard field says: which image a sidecar was written for, so a
# stem-named sidecar (IMG_1234.xmp) shared by IMG_1234.jpg and IMG_1234.png is caught, not overwritten.
FLORENCE_NS, FLORENCE_PREFIX = "https://florence-tagger.dev/ns/xmp/1.0/", "florence"
SOURCE_PROPERTY = "SourceImage"
HIERARCHY = "|"


@dataclass(frozen=True)
class XmpContent:
    caption: str
    keywords: list[str]  # as in the record: hierarchical terms joined by "|"
    alt_text: str | None = None
    headline: str | None = None
    language: str | None = None
    source_image: str | None = None  # the image's file name, recorded in our namespace

    @property
    def hierarchical(self) -> bool:
        return any(HIERARCHY in keyword for keyword in self.keywords)

    @property
    def leaves(self) -> list[str]:
        return list(dict.fromkeys(keyword.rsplit(HIERARCHY, 1)[-1] for keyword in self.keywords))


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


def parse_xmp(existing: bytes | None) -> Any:
    """An XMPMeta of an existing sidecar (or a new one); a sidecar that is not XMP is an error."""
    libxmp = require_libxmp()
    try:
        return libxmp.XMPMeta(xmp_str=existing.decode("utf-8")) if existing else libxmp.XMPMeta()
    except (UnicodeDecodeError, libxmp.XMPError) as exc:
        raise GatewayError(f"the existing XMP sidecar is not valid XMP: {exc}", code="xmp_invalid") from None


def source_image(meta: Any) -> str | None:
    """The image an existing sidecar was written for by us; None for a sidecar of another tool."""
    require_libxmp().XMPMeta.register_namespace(FLORENCE_NS, FLORENCE_PREFIX)
    if not meta.does_property_exist(FLORENCE_NS, SOURCE_PROPERTY):
        return None
    return str(meta.get_property(FLORENCE_NS, SOURCE_PROPERTY)) or None


def build_xmp(content: XmpContent, fields: Collection[str], existing: bytes | None = None) -> bytes:
    """The chosen fields written, merged into an existing sidecar.

    A sidecar may already hold a user's edits (darktable's history, a rating, a title): only the fields
    chosen here are replaced; everything else survives.
    """
    libxmp = require_libxmp()
    consts = libxmp.consts
    meta = parse_xmp(existing)
    languages = _languages(content.language)
    if "description" in fields:
        _lang_alt(meta, consts.XMP_NS_DC, "description", content.caption, languages)
    if "subject" in fields:
        _bag(meta, consts.XMP_NS_DC, "subject", content.leaves)
    if "alt_text" in fields and content.alt_text:
        _lang_alt(meta, consts.XMP_NS_IPTCCore, "AltTextAccessibility", content.alt_text, languages)
    if "ext_description" in fields and content.caption != content.alt_text:
        # The long description for screen readers: the caption, unless it is the alt text itself.
        _lang_alt(meta, consts.XMP_NS_IPTCCore, "ExtDescrAccessibility", content.caption, languages)
    if "headline" in fields and content.headline:
        meta.set_property(consts.XMP_NS_Photoshop, "Headline", content.headline)
    if "hierarchical_subject" in fields and content.hierarchical:
        # Flat keywords leave a user's Lightroom hierarchy alone; a hierarchical vocabulary replaces it.
        libxmp.XMPMeta.register_namespace(consts.XMP_NS_Lightroom, "lr")
        _bag(meta, consts.XMP_NS_Lightroom, "hierarchicalSubject", content.keywords)
    if content.source_image:
        libxmp.XMPMeta.register_namespace(FLORENCE_NS, FLORENCE_PREFIX)
        meta.set_property(FLORENCE_NS, SOURCE_PROPERTY, content.source_image)
    meta.set_property(consts.XMP_NS_XMP, "CreatorTool", CREATOR_TOOL)
    meta.set_property(consts.XMP_NS_XMP, "MetadataDate", datetime.now(UTC).isoformat())
    return str(meta.serialize_to_str(omit_packet_wrapper=False)).encode("utf-8")


def _languages(language: str | None) -> list[str]:
    # x-default is what readers show when they do not match a language; the real code says which it is.
    return ["x-default"] + ([language] if language and language != "x-default" else [])


def _lang_alt(meta: Any, namespace: str, name: str, text: str, languages: list[str]) -> None:
    meta.delete_property(namespace, name)
    for language in languages:
        meta.set_localized_text(namespace, name, language, language, text)


def _bag(meta: Any, namespace: str, name: str, items: list[str]) -> None:
    meta.delete_property(namespace, name)
    for item in items:
        meta.append_array_item(namespace, name, item, {"prop_array_is_unordered": True})
