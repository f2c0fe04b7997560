"""Book catalogs: the book task's starter catalog, or a user's CSV / JSONL / parquet file.

``Book`` is the book task's item as Python code builds it (catalogs from events); catalogs read
from files are validated against the task's item schema (``gravity.items``), which declares the
same fields and limits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

REQUIRED_COLUMNS = ("id", "title", "author", "description")
MIN_DESCRIPTION = 10
MAX_DESCRIPTION = 4000


class Book(BaseModel):
    """One book: ``description`` is a neutral base description (not personalized) of 10 to
    4000 characters; ``genres`` is a list (in a CSV: one cell, separated by ``;``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    title: Annotated[str, Field(min_length=1, max_length=300)]
    author: Annotated[str, Field(min_length=1, max_length=200)]
    year: int | None = None
    genres: tuple[str, ...] = ()
    description: (
        Annotated[str, Field(min_length=MIN_DESCRIPTION, max_length=MAX_DESCRIPTION)] | None
    ) = Field(
        default=None,
        description="Neutral base description, 10-4000 characters; None (an empty cell or "
        "null) where the source has none: the prompts then work from title, author and year. "
        "The column is still required.",
    )

    @field_validator("genres", mode="before")
    @classmethod
    def _genres(cls, value: Any) -> Any:
        if isinstance(value, str):  # CSV: "fantasy; adventure"
            return tuple(g.strip() for g in value.split(";") if g.strip())
        if value is None:
            return ()
        return tuple(value) if isinstance(value, (list, tuple)) else value

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("year", mode="before")
    @classmethod
    def _year(cls, value: Any) -> Any:
        return None if value in ("", None) else value


def default_catalog_path() -> Path:
    """The shipped starter catalog of the book task (72 books, 15 genres)."""
    from gravity.taskspec import load_task

    path = load_task().catalog_path()
    assert path is not None  # the book task ships its catalog
    return path


def load_catalog(path: str | Path | None = None, task: Any = None) -> list[Any]:
    """Items of ``path`` validated against ``task``'s item schema (default: the book task and
    its starter catalog); every problem (bounded) names the file, the line (row) and the field.
    """
    from gravity.taskspec import load_task

    return (task if task is not None else load_task()).load_catalog(path)
