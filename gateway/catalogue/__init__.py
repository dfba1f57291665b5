"""The caption catalogue: every result in one database (SQLite by default, PostgreSQL for replicas)."""

from gateway.catalogue.open import open_catalogue
from gateway.catalogue.search import CaptionQuery
from gateway.catalogue.store import Catalogue, Page

__all__ = ["CaptionQuery", "Catalogue", "Page", "open_catalogue"]
