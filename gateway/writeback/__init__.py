"""Write-back beside the image: a JSON sidecar, S3 object tags, an XMP sidecar. Never the image itself.

Shared by everything that produces captions in bulk (the batch command today), so every path writes the same
files the same way.
"""

from gateway.writeback.writer import MODES, WriteBack, parse_modes
from gateway.writeback.xmp import require_libxmp

__all__ = ["MODES", "WriteBack", "parse_modes", "require_libxmp"]
