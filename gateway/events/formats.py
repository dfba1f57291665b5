"""What S3-compatible stores send when an object changes, read into the objects that were created.

Four shapes: the S3 event notification document (AWS, Ceph RGW, and MinIO, which wraps it with
``EventName``/``Key``), EventBridge's "Object Created" event, SeaweedFS's filer webhook, and SNS's envelope
around the first. Each delivery may hold creations and everything else (deletes, tags, ACLs, directories):
the rest is counted by reason, never queued. No I/O: bytes in, objects out.

Keys: the notification document URL-encodes them (``red+flower.jpg``, MinIO also ``%2F``), except Ceph's;
EventBridge and SeaweedFS send them as they are.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.catalogue import ObjectVersion
from gateway.errors import InvalidInput

# The four ways an object comes to exist in S3; MinIO also files tag and retention changes under
# ObjectCreated (PutTagging, PutRetention...), which are not new content.
CREATED = frozenset({"Put", "Post", "Copy", "CompleteMultipartUpload"})
SEAWEED_BUCKETS = "/buckets/"  # the filer folder SeaweedFS keeps S3 buckets in
SEAWEED_ETAG = "Seaweed-X-Amz-ETag"  # base64 of the S3 ETag, as the filer's extended attributes hold it
SEAWEED_UPLOADS = ".uploads/"  # unfinished multipart parts
FORMATS = "an S3 event notification, an EventBridge S3 event, a SeaweedFS filer event or an SNS message"
MESSAGE_MAX_CHARS = 300


def invalid_event(detail: str) -> InvalidInput:
    return InvalidInput(f"not {FORMATS}: {detail}"[:MESSAGE_MAX_CHARS], code="invalid_event")


@dataclass
class Parsed:
    """The objects a delivery says were created (names unchecked), and what it held besides, by reason."""

    created: list[ObjectVersion] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    notices: list[str] = field(default_factory=list)  # for the log: an SNS subscription to confirm

    def skip(self, reason: str) -> None:
        self.ignored[reason] += 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class _Bucket(_Model):
    name: str = Field(min_length=1)


class _S3Object(_Model):
    key: str = Field(min_length=1)
    etag: str | None = Field(None, alias="eTag")


class _S3Entity(_Model):
    bucket: _Bucket
    object_: _S3Object = Field(alias="object")


class _S3Record(_Model):
    event_name: str = Field(alias="eventName")
    event_source: str = Field("", alias="eventSource")
    s3: _S3Entity


class _S3Notification(_Model):
    records: list[_S3Record] = Field(alias="Records")


class _BridgeObject(_Model):
    key: str = Field(min_length=1)
    etag: str | None = None


class _BridgeDetail(_Model):
    bucket: _Bucket
    object_: _BridgeObject = Field(alias="object")


class _EventBridge(_Model):
    detail_type: str = Field(alias="detail-type")
    detail: dict[str, Any]


class _SeaweedEntry(_Model):
    is_directory: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict)
    extended: dict[str, Any] = Field(default_factory=dict)


class _SeaweedMessage(_Model):
    old_entry: _SeaweedEntry | None = None
    new_entry: _SeaweedEntry | None = None


class _SeaweedEvent(_Model):
    event_type: str
    key: str
    message: _SeaweedMessage


class _Sns(_Model):
    type: str = Field(alias="Type")
    message: str | None = Field(None, alias="Message")
    subscribe_url: str | None = Field(None, alias="SubscribeURL")


def parse_events(body: bytes) -> Parsed:
    """Raises ``InvalidInput`` (code ``invalid_event``, a 422) for a body that is none of the formats."""
    parsed = Parsed()
    _dispatch(_json(body), parsed, inside_sns=False)
    return parsed


def _json(body: bytes | str) -> Any:
    try:
        return orjson.loads(body)  # orjson refuses nesting deeper than 1024 rather than recursing
    except orjson.JSONDecodeError:
        raise invalid_event("the body is not JSON") from None


def _dispatch(data: Any, parsed: Parsed, *, inside_sns: bool) -> None:
    if not isinstance(data, dict):
        raise invalid_event("the body is not a JSON object")
    if "Records" in data:
        _s3_notification(_validate(_S3Notification, data), parsed)
    elif data.get("source") == "aws.s3" and "detail-type" in data:
        _eventbridge(_validate(_EventBridge, data), parsed)
    elif {"event_type", "key", "message"} <= data.keys():
        _seaweed(_validate(_SeaweedEvent, data), parsed)
    elif "Type" in data and "TopicArn" in data and not inside_sns:
        _sns(_validate(_Sns, data), parsed)
    elif data.get("Event") == "s3:TestEvent":  # sent once when a notification is configured
        parsed.skip("notice")
    else:
        raise invalid_event(f"unrecognised keys {sorted(map(str, data))[:8]}")


def _validate(model: type[_Model], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Where and what, never the offending value: a body can be a megabyte of anything.
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise invalid_event(f"{where}: {first['msg']}") from None


def _s3_notification(notification: _S3Notification, parsed: Parsed) -> None:
    for record in notification.records:
        kind, _, action = record.event_name.removeprefix("s3:").partition(":")
        if kind != "ObjectCreated" or action not in CREATED:
            parsed.skip("not_created")
            continue
        raw = record.s3.object_.key
        key = raw if record.event_source == "ceph:s3" else unquote_plus(raw)
        parsed.created.append(ObjectVersion(record.s3.bucket.name, key, _etag(record.s3.object_.etag)))


def _eventbridge(event: _EventBridge, parsed: Parsed) -> None:
    if event.detail_type != "Object Created":
        parsed.skip("not_created")
        return
    detail = _validate(_BridgeDetail, event.detail)
    parsed.created.append(ObjectVersion(detail.bucket.name, detail.object_.key, _etag(detail.object_.etag)))


def _seaweed(event: _SeaweedEvent, parsed: Parsed) -> None:
    found = _seaweed_object(event)
    if isinstance(found, str):
        parsed.skip(found)
    else:
        parsed.created.append(found)


def _seaweed_object(event: _SeaweedEvent) -> ObjectVersion | str:
    """The object a filer event created, or why it created none."""
    entry, old = event.message.new_entry, event.message.old_entry
    # An overwrite arrives as an update with new content; a tag, ACL or metadata change as an update with
    # the same ETag. Deletes and renames (no S3 call makes one) are not new content either.
    if event.event_type not in ("create", "update") or entry is None:
        return "not_created"
    etag = _seaweed_etag(entry)
    if event.event_type == "update" and old is not None and _seaweed_etag(old) == etag:
        return "not_created"
    if entry.is_directory:
        return "directory"
    bucket, _, key = event.key.removeprefix(SEAWEED_BUCKETS).partition("/")
    outside = not event.key.startswith(SEAWEED_BUCKETS) or bucket.startswith(".")
    if outside or not key or key.startswith(SEAWEED_UPLOADS):
        return "internal"  # the filer's own files, a bucket itself, multipart parts in progress
    return ObjectVersion(bucket, key, etag)


def _seaweed_etag(entry: _SeaweedEntry) -> str | None:
    """The object's S3 ETag: the filer keeps it base64-encoded; a file written through the filer's own HTTP
    API has only its MD5 (base64 of the bytes), which is the ETag of a single-part object."""
    try:
        if isinstance(stored := entry.extended.get(SEAWEED_ETAG), str):
            return _etag(base64.b64decode(stored, validate=True).decode("ascii"))
        if isinstance(md5 := entry.attributes.get("md5"), str):
            return base64.b64decode(md5, validate=True).hex() or None
    except (binascii.Error, UnicodeDecodeError):
        return None
    return None


def _sns(envelope: _Sns, parsed: Parsed) -> None:
    if envelope.type == "Notification" and envelope.message is not None:
        _dispatch(_json(envelope.message), parsed, inside_sns=True)
    elif envelope.type in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        parsed.skip("notice")
        if envelope.subscribe_url:
            parsed.notices.append(f"SNS {envelope.type}: confirm by visiting {envelope.subscribe_url!r}")
    else:
        raise invalid_event(f"SNS message of type {envelope.type[:40]!r}")


def _etag(value: str | None) -> str | None:
    # S3 quotes ETags in headers and listings; events send them bare. One form everywhere: bare.
    return value.strip().strip('"') or None if value else None
