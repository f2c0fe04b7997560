"""Book catalogs: the shipped starter catalog, or a user's CSV / JSONL / parquet file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gravity.errors import MAX_PROBLEMS, InputError, Problem, validation_problems
from gravity.io import (
    Record,
    csv_records,
    file_error,
    jsonl_records,
    parquet_rows,
    read_text,
    reading,
)
from gravity.resources import catalog_dir

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
    """The shipped starter catalog (72 books, 15 genres)."""
    return catalog_dir() / "books.jsonl"


def _rows(path: Path) -> list[Record]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return list(jsonl_records(read_text(path), path))
    if suffix == ".csv":
        return csv_records(read_text(path), path)[1]
    if suffix == ".parquet":
        return parquet_rows(path)
    raise file_error(path, "unknown catalog format; use .csv, .jsonl or .parquet")


def load_catalog(path: str | Path | None = None) -> list[Book]:
    """Books from ``path`` (default: the starter catalog); every problem (bounded) names the
    file, the line (row) and the field."""
    path = Path(path) if path is not None else default_catalog_path()
    with reading(path):
        rows = _rows(path)
        if not rows:
            raise file_error(path, "no books in catalog")
        first = next((r.data for r in rows if isinstance(r.data, dict)), None)
        missing = [c for c in REQUIRED_COLUMNS if first is not None and c not in first]
        if missing:
            raise file_error(
                path,
                f"missing column(s) {', '.join(missing)}; required: {', '.join(REQUIRED_COLUMNS)}",
            )
        books: list[Book] = []
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for record in rows:
            if len(problems) > MAX_PROBLEMS:
                break
            if record.problem is not None:
                problems += record.problem.problems
                continue
            if not isinstance(record.data, dict):
                problems.append(Problem(path, "a book must be a mapping", "<record>", record.line))
                continue
            try:
                book = Book.model_validate(record.data)
            except ValidationError as exc:
                problems += validation_problems(exc, path, Book, line=record.line)
                continue
            if book.id in seen:
                reason = f"duplicate book id '{book.id}' (first on line {seen[book.id]})"
                problems.append(Problem(path, reason, "id", record.line))
                continue
            seen[book.id] = record.line
            books.append(book)
        if problems:
            raise InputError(problems)
        return books
