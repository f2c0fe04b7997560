"""Book catalogs: the shipped starter catalog, or a user's CSV / JSONL / parquet file."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gravity.errors import GravityError
from gravity.resources import catalog_dir

REQUIRED_COLUMNS = ("id", "title", "author", "description")


class Book(BaseModel):
    """One book: ``description`` is a neutral base description (not personalized)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    title: Annotated[str, Field(min_length=1, max_length=300)]
    author: Annotated[str, Field(min_length=1, max_length=200)]
    year: int | None = None
    genres: tuple[str, ...] = ()
    description: Annotated[str, Field(min_length=10, max_length=4000)] | None = Field(
        default=None,
        description="Neutral description; None (an empty cell or null) where the source has "
        "none: the prompts then work from title, author and year. The column is still required.",
    )

    @field_validator("genres", mode="before")
    @classmethod
    def _genres(cls, value: Any) -> Any:
        if isinstance(value, str):  # CSV: "fantasy; adventure"
            return tuple(g.strip() for g in value.split(";") if g.strip())
        if value is None:
            return ()
        return tuple(value)

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


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = []
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append((number, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise GravityError(f"{path}:{number}: <json>: {exc.msg}") from None
            return rows
        if suffix == ".csv":
            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                return [(number, row) for number, row in enumerate(reader, start=2)]
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path).to_pylist()
            return [(number, row) for number, row in enumerate(table, start=1)]
    except OSError as exc:
        raise GravityError(f"{path}: cannot read: {exc.strerror or exc}") from None
    raise GravityError(f"{path}: unknown catalog format; use .csv, .jsonl or .parquet")


def load_catalog(path: str | Path | None = None) -> list[Book]:
    """Books from ``path`` (default: the starter catalog); errors name the file, row and field."""
    path = Path(path) if path is not None else default_catalog_path()
    rows = _rows(path)
    if not rows:
        raise GravityError(f"{path}: no books in catalog")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0][1]]
    if missing:
        raise GravityError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"required: {', '.join(REQUIRED_COLUMNS)}"
        )
    books: list[Book] = []
    seen: set[str] = set()
    for number, row in rows:
        if not isinstance(row, dict):
            raise GravityError(f"{path}:{number}: <record>: a book must be a mapping")
        try:
            book = Book.model_validate(row)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "<record>"
            raise GravityError(f"{path}:{number}: {field}: {err['msg']}") from None
        if book.id in seen:
            raise GravityError(f"{path}:{number}: id: duplicate book id '{book.id}'")
        seen.add(book.id)
        books.append(book)
    return books
