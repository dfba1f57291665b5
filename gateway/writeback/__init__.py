"""Write-back beside the image: a JSON sidecar, S3 object tags, an XMP sidecar. Never the image itself.

Shared by everything that produces captions in bulk (the batch command today; the event workers and review
approvals later), so every path writes the same files the same way, configured by the same settings.
"""

from gateway.writeback.writer import MODES, XMP_NAMES, WriteBack, WriteBackConfig, parse_modes, xmp_location
from gateway.writeback.xmp import require_libxmp

__all__ = [
    "MODES",
    "XMP_NAMES",
    "WriteBack",
    "WriteBackConfig",
    "parse_modes",
    "require_libxmp",
    "xmp_location",
]
