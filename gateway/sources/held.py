"""An image's bytes in memory, and the image slot that pays for them.

``MAX_CONCURRENT_IMAGES`` bounds the originals in memory at once: whatever holds one (an S3 download, a URL
fetch, an upload streaming in, a base64 string being decoded) holds one of the pipeline's slots from before
the first byte until the bytes are decoded or given up. The holder may change on the way (the API receives an
upload, then the pipeline decodes it), so the slot travels with the bytes as a ``Lease``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

HASH_IN_THREAD_BYTES = 1 << 20  # hashlib releases the GIL: a large image is hashed off the event loop


class Lease:
    """One image slot, given back once, by whoever releases it first."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


@dataclass(eq=False)
class HeldImage:
    """The bytes of one image and their SHA-256, holding ``lease`` until ``release()``."""

    data: bytes
    sha256: str
    lease: Lease
    etag: str | None = None  # S3's version of the object, for S3 images
    fetched_url: str | None = None  # where a URL's bytes came from, after redirects

    def release(self) -> None:
        """Drops the bytes and gives the slot back (idempotent): called once they are decoded or unneeded."""
        self.data = b""
        self.lease.release()


async def sha256_of(data: bytes) -> str:
    if len(data) < HASH_IN_THREAD_BYTES:
        return hashlib.sha256(data).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
