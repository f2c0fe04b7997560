"""A book catalog from an events folder's items (for synthesis and evaluation on real readers)."""

from __future__ import annotations

import re
from collections import Counter

import pyarrow.compute as pc

from gravity.books import Book
from gravity.events.store import EventsData

_BAD_ID = re.compile(r"[^A-Za-z0-9_.:-]")


def book_id(item_id: str) -> str:
    """The catalog id of an events item (ids are restricted to characters prompts and files
    accept)."""
    return _BAD_ID.sub("-", item_id)[:128].lstrip("-_.:") or "item"


def without_books(data: EventsData, book_ids: set[str]) -> tuple[EventsData, int]:
    """``data`` without the events on the books ``book_ids`` (catalog ids), and how many were
    set aside: profiles inferred from it never saw those books."""
    import dataclasses

    import pyarrow as pa

    if not book_ids or data.events.num_rows == 0:
        return data, 0
    keep = [
        item is None or book_id(item) not in book_ids
        for item in data.events.column("item_id").to_pylist()
    ]
    events = data.events.filter(pa.array(keep, type=pa.bool_()))
    return dataclasses.replace(data, events=events), data.events.num_rows - events.num_rows


def books_from_events(data: EventsData, top: int = 200, min_events: int = 1) -> list[Book]:
    """The ``top`` items with the most events (at least ``min_events``) that have a title and an
    author, as ``Book``s: categories become genres; a description only where the data has one
    (10-4000 characters), else None and the prompts work from title, author and year."""
    counts = Counter(pc.drop_null(data.events.column("item_id")).to_pylist())
    items = {row["id"]: row for row in data.items.to_pylist()}
    books: list[Book] = []
    seen: set[str] = set()
    for item_id, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])):
        if n < min_events or len(books) >= top:
            break
        item = items.get(item_id)
        if not item or not item["title"] or not item["author"]:
            continue
        bid = book_id(item_id)
        if bid in seen:
            continue
        description = item["description"]
        if description is not None and not 10 <= len(description) <= 4000:
            description = (
                description[:3990].rsplit(" ", 1)[0] + " ..." if len(description) > 4000 else None
            )
        seen.add(bid)
        books.append(
            Book(
                id=bid,
                title=item["title"][:300],
                author=item["author"][:200],
                year=item["year"],
                genres=tuple(item["categories"] or ())[:5],
                description=description,
            )
        )
    return books
