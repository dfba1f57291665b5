"""The review API under the review page: edit a caption, decide one or many, retry a write-back.

Behind ``API_KEYS`` like the rest of ``/v1``. Every answer is the catalogue entry as it now stands,
``write_back`` included, so the page shows what an approval wrote (or why it could not).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.api.deps import ReviewDep
from gateway.api.errors import REVIEW_RESPONSES
from gateway.api.schemas import MAX_CAPTION_ID, CaptionIdPath
from gateway.errors import InvalidInput
from gateway.records import CatalogueEntry, Decision

# Protected: the request guard checks the key; routes.include_routers declares it when API_KEYS is set.
router = APIRouter(prefix="/v1/captions", tags=["review"])
MAX_IDS = 200

Caption = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
AltText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=250)]
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
EDITABLE = ("caption", "alt_text", "keywords")


class CaptionEdit(BaseModel):
    """Only the keys sent change anything; ``null`` drops a person's edit of that field (the model's text
    shows again). The model's own text is never changed: edits are kept beside it."""

    model_config = ConfigDict(extra="forbid")

    caption: Caption | None = Field(None, description="The caption as a person wrote it")
    alt_text: AltText | None = Field(None, description="Alt text (IPTC AltTextAccessibility), ≤ 250 chars")
    keywords: Annotated[list[Keyword], Field(max_length=100)] | None = Field(
        None, description="The keywords as a person chose them (replaces the model's list)"
    )
    status: Decision | None = Field(
        None,
        description="approved (writes back, see REVIEW_WRITE_BACK), rejected (writes nothing) or pending. "
        "Without it, an edited entry becomes `edited` until approved.",
    )

    def edits(self) -> dict[str, object]:
        sent = {name: getattr(self, name) for name in EDITABLE if name in self.model_fields_set}
        if isinstance(sent.get("keywords"), list):
            sent["keywords"] = list(dict.fromkeys(sent["keywords"]))  # a repeated keyword says nothing new
        return sent


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_CAPTION_ID)]], Field(min_length=1, max_length=MAX_IDS)
    ] = Field(description="Catalogue ids; all must exist or nothing changes")
    status: Decision


class ReviewOut(BaseModel):
    items: list[CatalogueEntry] = Field(description="The entries as they now stand, in the order asked")


@router.patch("/{caption_id:int}", response_model=CatalogueEntry, responses=REVIEW_RESPONSES)
async def edit_caption(caption_id: CaptionIdPath, body: CaptionEdit, review: ReviewDep) -> CatalogueEntry:
    edits = body.edits()
    if not edits and body.status is None:
        raise InvalidInput("nothing to change: send caption, alt_text, keywords or status")
    return await review.edit(caption_id, edits, body.status)


@router.post("/review", response_model=ReviewOut, responses=REVIEW_RESPONSES)
async def review_captions(body: ReviewIn, review: ReviewDep) -> ReviewOut:
    """One decision for many entries (every card on a page): approving writes each one back."""
    return ReviewOut(items=await review.decide(body.ids, body.status))


@router.post("/{caption_id:int}/write-back", response_model=CatalogueEntry, responses=REVIEW_RESPONSES)
async def retry_write_back(caption_id: CaptionIdPath, review: ReviewDep) -> CatalogueEntry:
    """Writes an approved entry back again (after a failure, or once REVIEW_WRITE_BACK changed)."""
    return await review.retry_write_back(caption_id)
