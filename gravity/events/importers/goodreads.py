"""Goodreads library export (the CSV a person downloads from their account): one reader.

Columns used: Book Id, Title, Author, Additional Authors, ISBN, ISBN13, My Rating (0 = unrated),
Publisher, Year Published, Original Publication Year, Date Read, Date Added, Bookshelves,
Exclusive Shelf (read / currently-reading / to-read), My Review, Read Count. ISBNs are written as
spreadsheet formulas (``="0316769177"``, ``=""`` when missing).

Each row is one book and yields: a ``shelve`` event (the exclusive shelf plus the bookshelves, at
Date Added); a ``rate`` event when My Rating > 0 (at Date Read, else Date Added); a ``review``
event when My Review holds text; a ``read`` event per read when the book is on the read shelf.
"""

from __future__ import annotations

import re
from pathlib import Path

from gravity.events.importers.common import csv_rows, open_text, parse_int
from gravity.events.importers.common import parse_time as _time
from gravity.events.models import User
from gravity.events.store import Collector

REQUIRED = ("Book Id", "Title", "Author", "My Rating", "Exclusive Shelf")
_FORMULA = re.compile(r'^="?(.*?)"?$')


def clean_isbn(value: str) -> str | None:
    """``="0316769177"`` -> ``0316769177``; ``=""`` or blank -> None."""
    text = (value or "").strip()
    match = _FORMULA.match(text)
    if match:
        text = match.group(1)
    text = text.strip().replace("-", "")
    return text or None


def _year(row: dict[str, str]) -> int | None:
    for column in ("Original Publication Year", "Year Published"):
        try:
            year = parse_int(row.get(column))
        except ValueError:
            continue
        if year is not None and 0 < year <= 2100:
            return year
    return None


def import_goodreads(path: Path, collector: Collector, user_id: str = "goodreads-reader") -> None:
    """Read one Goodreads export into ``collector`` (ratings on a 1-5 scale)."""
    collector.rating_min, collector.rating_max = 1.0, 5.0
    name = str(path)
    collector.sources.append(name)
    # The export holds one reader and says nothing about them but their books.
    collector.users[user_id] = User(id=user_id).model_dump()
    with open_text(path, "utf-8-sig") as stream:
        for line, bad, row in csv_rows(name, stream, REQUIRED):
            if bad is not None:
                collector.reject(name, line, "field_count", bad)
                continue
            try:
                records = _records(row, user_id)
            except ValueError as exc:
                collector.reject(name, line, "invalid_field", str(exc))
                continue
            item, events = records
            collector.add(name, line, items=(item,), events=tuple(events))


def _records(row: dict[str, str], user_id: str) -> tuple[dict, list[dict]]:
    book = row["Book Id"].strip()
    isbn = clean_isbn(row.get("ISBN13", "")) or clean_isbn(row.get("ISBN", ""))
    authors = [row["Author"].strip()] + [
        a.strip() for a in row.get("Additional Authors", "").split(",") if a.strip()
    ]
    shelves = [s.strip() for s in row.get("Bookshelves", "").split(",") if s.strip()]
    exclusive = row["Exclusive Shelf"].strip()
    item = {
        "id": book,
        "isbn": isbn,
        "title": row["Title"].strip(),
        "author": ", ".join(a for a in authors if a),
        "year": _year(row),
        "publisher": row.get("Publisher", "").strip() or None,
        "categories": shelves,
    }
    try:
        added = _time(row.get("Date Added"))
    except ValueError as exc:
        raise ValueError(f"Date Added: {exc}") from None
    try:
        read = _time(row.get("Date Read"))
    except ValueError as exc:
        raise ValueError(f"Date Read: {exc}") from None
    try:
        rating = parse_int(row["My Rating"])
    except ValueError:
        raise ValueError(f"My Rating: not an integer: {row['My Rating']!r}") from None
    if rating is not None and not 0 <= rating <= 5:
        raise ValueError(f"My Rating: {rating} outside 0-5")
    base = {"user_id": user_id, "kind": "personal", "item_id": book}
    events = [{**base, "action": "shelve", "shelves": [exclusive, *shelves], "timestamp": added}]
    if rating:  # 0 means "not rated"
        events.append(
            {**base, "action": "rate", "value": float(rating), "timestamp": read or added}
        )
    review = row.get("My Review", "").strip()
    if review:
        events.append(
            {
                **base,
                "action": "review",
                "text": review,
                "value": float(rating) if rating else None,
                "timestamp": read or added,
            }
        )
    if exclusive == "read":
        try:
            count = parse_int(row.get("Read Count")) or 1
        except ValueError:
            raise ValueError(f"Read Count: not an integer: {row.get('Read Count')!r}") from None
        events.extend({**base, "action": "read", "timestamp": read} for _ in range(max(1, count)))
    return item, events
