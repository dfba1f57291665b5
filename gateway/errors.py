"""Every error the gateway raises on purpose, in one place. ``api/errors.py`` maps them to HTTP once (one
table); the batch command maps them to failure lines and exit codes.

Every error carries a stable ``code`` (clients switch on it) and a message that is safe to show: no
secrets, no image bytes.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the pipeline raises on purpose."""

    code = "gateway_error"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retry_after = retry_after


class InvalidInput(GatewayError):
    """The request itself is wrong (bad S3 URI, unknown style): fix the request."""

    code = "invalid_request"


class RequestTooLarge(GatewayError):
    """A request body over its route's cap, refused while it streams in (before it is held whole)."""

    code = "request_too_large"


class BodyTooSlow(GatewayError):
    """A request body that did not arrive within CLIENT_BODY_TIMEOUT_S."""

    code = "request_timeout"


class ImageUrlForbidden(InvalidInput):
    """An image URL the gateway will not fetch (scheme, credentials, port, or an address inside the network):
    refused before any connection to it. ``image_url_disabled`` when URLs are off (``IMAGE_URL_ENABLED``)."""

    code = "image_url_forbidden"


class GatewayBusy(GatewayError):
    """The gateway itself is saturated (every image slot taken): try again shortly."""

    code = "gateway_busy"


# --- the image source ------------------------------------------------------------------------------------
class ObjectNotFound(GatewayError):
    code = "s3_not_found"


class AccessDenied(GatewayError):
    code = "s3_access_denied"


class SourceUnavailable(GatewayError):
    """S3 unreachable, throttling or failing after retries: try again later."""

    code = "s3_unavailable"


class ImageUrlFailed(GatewayError):
    """An image URL's server could not be reached or did not answer with an image: not the gateway's fault,
    nor the request's (``image_url_unreachable``, ``image_url_bad_status``, ``image_url_redirects``)."""

    code = "image_url_unreachable"


class ImageUrlTimeout(GatewayError):
    """An image URL's server did not connect, or did not send the whole image, in time."""

    code = "image_url_timeout"


# --- the image itself --------------------------------------------------------------------------------------
class ImageTooLarge(GatewayError):
    """Too many bytes or too many pixels."""

    code = "image_too_large"


class UnsupportedImage(GatewayError):
    """Not an image, an unsupported format, truncated or empty."""

    code = "unsupported_image"


# --- the model backends ------------------------------------------------------------------------------------
class BackendError(GatewayError):
    """Base for failures of a model server; ``backend`` is ``vlm`` or ``enhancer``."""

    def __init__(self, backend: str, message: str, *, code: str, retry_after: float | None = None) -> None:
        super().__init__(message, code=f"{backend}_{code}", retry_after=retry_after)
        self.backend = backend


class BackendUnavailable(BackendError):
    """Unreachable, or 429/5xx after retries: try again later."""


class BackendTimeout(BackendError):
    """No answer within the configured per-attempt timeout."""


class BackendBadResponse(BackendError):
    """The backend refused the request (other 4xx) or answered something unusable."""


class EnhancementFailed(GatewayError):
    """The enhancer failed in any way: the caller keeps the VLM's caption and reports this."""

    code = "enhancement_failed"


# --- the catalogue ---------------------------------------------------------------------------------------
class CatalogueUnavailable(GatewayError):
    """The catalogue's database is down, unreachable or failing: captions go on uncached, searches wait."""

    code = "catalogue_unavailable"


class CaptionNotFound(GatewayError):
    """No catalogue entry with that id."""

    code = "caption_not_found"


class ReviewConflict(GatewayError):
    """The entry is not in a state this review action applies to (a write-back retry of an unapproved one)."""

    code = "review_conflict"


class CatalogueRefused(GatewayError):
    """The database cannot be used as it is (a schema newer than this release, say): refuse to start."""

    code = "catalogue_refused"


# --- write-back and the batch command ---------------------------------------------------------------------
class XmpUnavailable(GatewayError):
    """XMP write-back asked for, but python-xmp-toolkit or the Exempi library is missing."""

    code = "xmp_unavailable"


class XmpNameCollision(GatewayError):
    """Two images share a stem-named XMP sidecar (``a.jpg`` and ``a.png`` -> ``a.xmp``): the second one is
    refused, never silently written over the first one's sidecar."""

    code = "xmp_name_collision"


class CannotStart(Exception):
    """A batch cannot start (DEST exists without --resume/--overwrite, cannot be written, a bad option):
    exit 1 before any model call."""


class OutputFailed(Exception):
    """DEST stopped accepting lines mid-run: stop, since every further caption would be lost."""


# --- the HTTP front door ------------------------------------------------------------------------------------
class Overloaded(GatewayError):
    """Admission control refused the request (MAX_INFLIGHT busy and MAX_QUEUED waiting, or QUEUE_TIMEOUT_S
    passed in the queue): try again after Retry-After."""

    code = "overloaded"
