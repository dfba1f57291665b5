"""A person's review of catalogue entries: edits kept beside the model's text, decisions, write-back state.

Every change is one write transaction that reads the row it changes (``UPDATE ... RETURNING``), so two
reviewers deciding at once each see a whole entry, never half of the other's change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, select, update

from gateway.catalogue.database import Database
from gateway.catalogue.schema import captions
from gateway.catalogue.store import entry_of, line_of, search_text
from gateway.errors import CaptionNotFound
from gateway.records import CatalogueEntry, Decision, EditedFields, ReviewStatus, WriteBackState


class ReviewStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def edit(
        self, caption_id: int, edits: Mapping[str, Any], decision: Decision | None = None
    ) -> CatalogueEntry:
        """Applies a person's edits (a field set to None drops that edit, back to the model's text) and,
        when given, a decision. Without one, a changed entry is ``edited``: it waits for approval."""
        async with self.database.begin() as connection:
            row = (await connection.execute(select(captions).where(captions.c.id == caption_id))).first()
            if row is None:
                raise CaptionNotFound(f"no caption with id {caption_id} in the catalogue")
            entry = entry_of(row)
            edited = merged(entry.edited, edits)
            status = _status(entry, edited, decision)
            values = {
                **search_text(line_of(entry), edited),
                "edited": edited.model_dump(mode="json", exclude_none=True) if edited else None,
                "status": status,
                "updated_at": datetime.now(UTC),
            }
            stmt = update(captions).where(captions.c.id == caption_id).values(**values).returning(captions)
            return entry_of((await connection.execute(stmt)).one())

    async def decide(self, ids: Sequence[int], decision: Decision) -> list[CatalogueEntry]:
        """One decision for several entries, all or none: an unknown id changes nothing. ``pending`` sends an
        edited entry back to ``edited``, since its edit still waits for approval."""
        wanted = list(dict.fromkeys(ids))
        status: Any = decision
        if decision == "pending":
            status = case((captions.c.edited.is_not(None), "edited"), else_="pending")
        stmt = (
            update(captions)
            .where(captions.c.id.in_(wanted))
            .values(status=status, updated_at=datetime.now(UTC))
            .returning(captions)
        )
        async with self.database.begin() as connection:
            rows = {row.id: row for row in (await connection.execute(stmt)).all()}
            missing = [caption_id for caption_id in wanted if caption_id not in rows]
            if missing:  # raised inside the transaction: it rolls back, nothing was decided
                raise CaptionNotFound(f"no caption with id {', '.join(map(str, missing))} in the catalogue")
        return [entry_of(rows[caption_id]) for caption_id in wanted]

    async def record_write_back(self, caption_id: int, state: WriteBackState) -> CatalogueEntry:
        stmt = (
            update(captions)
            .where(captions.c.id == caption_id)
            .values(write_back=state.model_dump(mode="json", exclude_none=True), updated_at=datetime.now(UTC))
            .returning(captions)
        )
        async with self.database.begin() as connection:
            row = (await connection.execute(stmt)).first()
        if row is None:
            raise CaptionNotFound(f"no caption with id {caption_id} in the catalogue")
        return entry_of(row)


def _status(entry: CatalogueEntry, edited: EditedFields | None, decision: Decision | None) -> ReviewStatus:
    if decision is None:
        if edited == entry.edited:
            return entry.status  # an edit that changes nothing undoes no decision
        return "edited" if edited else "pending"
    return "edited" if decision == "pending" and edited else decision


def merged(current: EditedFields | None, edits: Mapping[str, Any]) -> EditedFields | None:
    """The edits a person has made so far, with these applied; None when nothing differs any more."""
    fields = current.model_dump(exclude_none=True) if current else {}
    for name, value in edits.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return EditedFields(**fields) if fields else None
