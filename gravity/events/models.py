"""Typed event data: users, items and one time-ordered event sequence per user.

Two kinds of events:

- ``personal``: the user acting on an item (``rate``, ``review``, ``shelve``, ``read``,
  ``interact`` ...), with an optional ``value`` (a rating on the dataset's scale), ``text`` (a
  review), ``shelves`` and ``timestamp``;
- ``relational``: the user acting towards another user (``follow``, ``friend``, ``recommend``,
  ``reply`` ...), with ``other_user_id``, an optional ``item_id`` and ``timestamp``.

An events folder holds ``users.parquet``, ``items.parquet``, ``events.parquet`` (one row per model
below), ``rejects.jsonl`` (one line per rejected input row: file, line, reason) and ``meta.json``
(format, sources, rating scale, rows in = imported + rejected).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# No control characters in ids: they break joins, file names and terminals downstream.
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
Action = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Short = Annotated[str, Field(min_length=1, max_length=500)]
MAX_CATEGORIES = 100  # categories of an item, shelves of an event

PERSONAL_ACTIONS = ("rate", "review", "shelve", "read", "interact", "add-to-list")
RELATIONAL_ACTIONS = ("follow", "friend", "recommend", "reply", "message")
"""The usual actions; any lowercase token is accepted (``action`` is open)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


class User(_Strict):
    """A user: what the source says about them (nothing inferred here)."""

    id: Id
    location: Annotated[str, Field(max_length=300)] | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="ISO alpha-2, resolved from ``location`` when it names one."
    )
    age: Annotated[int, Field(ge=1, le=120)] | None = None

    _blank = field_validator("location", "country", "age", mode="before")(_blank_to_none)


class Item(_Strict):
    """A book (or any item): metadata as the source gives it."""

    id: Id
    isbn: Annotated[str, Field(pattern=r"^[0-9Xx]{10}([0-9]{3})?$")] | None = None
    title: Annotated[str, Field(max_length=1000)] | None = None
    author: Annotated[str, Field(max_length=500)] | None = None
    year: Annotated[int, Field(ge=0, le=2100)] | None = None
    publisher: Annotated[str, Field(max_length=300)] | None = None
    description: Annotated[str, Field(max_length=20000)] | None = None
    categories: list[Short] = Field(default_factory=list, max_length=MAX_CATEGORIES)

    _blank = field_validator(
        "isbn", "title", "author", "year", "publisher", "description", mode="before"
    )(_blank_to_none)


class Event(_Strict):
    """One event of one user; ``kind`` decides which target field is required."""

    user_id: Id
    kind: Literal["personal", "relational"]
    action: Action
    item_id: Id | None = None
    other_user_id: Id | None = None
    value: float | None = Field(default=None, description="Rating on the dataset's scale.")
    text: Annotated[str, Field(max_length=50000)] | None = None
    shelves: list[Short] = Field(default_factory=list, max_length=MAX_CATEGORIES)
    timestamp: datetime | None = None

    _blank = field_validator(
        "item_id", "other_user_id", "value", "text", "timestamp", mode="before"
    )(_blank_to_none)

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc) if value is not None else None

    @model_validator(mode="after")
    def _target(self) -> Event:
        if self.kind == "personal" and self.item_id is None:
            raise ValueError("a personal event needs item_id")
        if self.kind == "relational":
            if self.other_user_id is None:
                raise ValueError("a relational event needs other_user_id")
            if self.other_user_id == self.user_id:
                raise ValueError("a relational event needs another user than user_id")
        return self


class Reject(_Strict):
    """One input row that was not imported, and why."""

    file: str
    line: int
    reason: str
    kind: str = Field(description="Short reason class, for counts.")


class Meta(_Strict):
    """What an import read and wrote: rows in = imported + rejected, per file."""

    format: str
    sources: list[str]
    rating_min: float | None = None
    rating_max: float | None = None
    rows_in: dict[str, int]
    imported: dict[str, int]
    rejected: dict[str, int]
    rejects_by_reason: dict[str, int]
    notes: dict[str, int] = Field(
        default_factory=dict,
        description="Field-level clean-ups that kept the row (e.g. ages out of range dropped).",
    )
