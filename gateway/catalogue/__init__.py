"""The caption catalogue: every result in one database (SQLite by default, PostgreSQL for replicas)."""

from gateway.catalogue.open import open_catalogue
from gateway.catalogue.queue import (
    QUEUE_STATES,
    ClaimedEvent,
    Enqueued,
    EventQueue,
    ObjectVersion,
    QueueError,
    QueueStats,
)
from gateway.catalogue.review import ReviewStore
from gateway.catalogue.search import CaptionQuery
from gateway.catalogue.store import Catalogue, Page, identity_of

__all__ = [
    "QUEUE_STATES",
    "CaptionQuery",
    "Catalogue",
    "ClaimedEvent",
    "Enqueued",
    "EventQueue",
    "ObjectVersion",
    "Page",
    "QueueError",
    "QueueStats",
    "ReviewStore",
    "identity_of",
    "open_catalogue",
]
