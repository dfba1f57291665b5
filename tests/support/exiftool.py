"""exiftool (Debian libimage-exiftool-perl) as the tests' second XMP reader: what a DAM would see."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

RDF_LI = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li"
EXIFTOOL_NS = "http://ns.exiftool.org/XMP/"


def exiftool_path() -> str:
    found = shutil.which("exiftool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("exiftool is missing: apt-get install libimage-exiftool-perl")
        pytest.skip("exiftool is not installed (apt-get install libimage-exiftool-perl)")
    return found


def exiftool_json(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [exiftool_path(), "-j", "-struct", "-XMP:all", str(path)], capture_output=True, check=True
    )
    return dict(json.loads(out.stdout)[0])


def exiftool_x(path: Path) -> dict[str, str | list[str]]:
    """``exiftool -X``, as ``{"XMP-dc:Description-de": text, "XMP-dc:Subject": [items]}``: exiftool's own
    group and tag names, a language other than x-default as the ``-lang`` suffix, a list for an rdf:Bag of
    two or more items (exiftool prints a one-item Bag as plain text: see ``items``)."""
    out = subprocess.run([exiftool_path(), "-X", str(path)], capture_output=True, check=True)
    found: dict[str, str | list[str]] = {}
    description = ElementTree.fromstring(out.stdout)[0]
    for element in description:
        uri, _, name = element.tag[1:].partition("}")
        if not uri.startswith(EXIFTOOL_NS):
            continue
        group = uri.removeprefix(EXIFTOOL_NS).split("/")[0]
        items = [li.text or "" for li in element.iter(RDF_LI)]
        found[f"{group}:{name}"] = items if items else element.text or ""
    return found


def write_tags(path: Path, *assignments: str) -> None:
    """Writes metadata as a photographer's tool would (``-XMP-dc:Title=...``, ``-IPTC:Keywords=...``)."""
    subprocess.run(
        [exiftool_path(), "-q", "-overwrite_original", "-charset", "iptc=UTF8", *assignments, str(path)],
        check=True,
    )


def items(value: str | list[str]) -> list[str]:
    """A list-valued tag as a list, whether exiftool printed one item or several."""
    return value if isinstance(value, list) else [value]
