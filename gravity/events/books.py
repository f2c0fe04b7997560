"""A book catalog from an events folder's items (for synthesis and evaluation on real readers)."""

from __future__ import annotations

import re
from collections import Counter

import pyarrow.compute as pc

from gravity.books import Book
from gravity.events.store import EventsData

_BAD_ID = re.compile(r"[^A-Za-z0-9_.:-]")


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
        book_id = _BAD_ID.sub("-", item_id)[:128].lstrip("-_.:") or "item"
        if book_id in seen:
            continue
        description = item["description"]
        if description is not None and not 10 <= len(description) <= 4000:
            description = (
                description[:3990].rsplit(" ", 1)[0] + " ..." if len(description) > 4000 else None
            )
        seen.add(book_id)
        books.append(
            Book(
                id=book_id,
                title=item["title"][:300],
                author=item["author"][:200],
                year=item["year"],
                genres=tuple(item["categories"] or ())[:5],
                description=description,
            )
        )
    return books
