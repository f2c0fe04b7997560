"""A book catalog from an events folder's items (for synthesis and evaluation on real readers)."""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Callable

from gravity.books import Book
from gravity.events.store import EventsData

_BAD_ID = re.compile(r"[^A-Za-z0-9_.:-]")


def book_id(item_id: str) -> str:
    """The catalog id of an events item (ids are restricted to characters prompts and files
    accept)."""
    return _BAD_ID.sub("-", item_id)[:128].lstrip("-_.:") or "item"


_ARTICLE = re.compile(r"^(the|a|an|der|die|das|le|la|les|el|los|las|il|lo) ")
_SUBTITLE = re.compile(r"[(\[:;]| - | -- |\.\.\.")


def _plain(text: str | None) -> str:
    """Casefolded words only: HTML entities decoded, accents and punctuation dropped, '&' read
    as 'and'."""
    text = unicodedata.normalize("NFKD", html.unescape(html.unescape(text or "")))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", text.replace("&", " and ")).split())


def work_key(title: str | None, author: str | None) -> tuple[str, str]:
    """(title, author) of a work, the same for its editions, which have ids of their own (one
    ISBN each). Loose on purpose, since grouping two books as one costs a catalog entry while
    missing an edition of a held-out book leaks it: the title before a subtitle (':', ';',
    ' - ', '...') or a bracketed part, without a leading article; the author's surname (the last
    word of three or more letters, so initials and their spelling do not count)."""
    text = html.unescape(html.unescape(title or "")).casefold()  # '&amp;' is not a ';' subtitle
    main = _ARTICLE.sub("", _plain(_SUBTITLE.split(text, maxsplit=1)[0]))
    if main in {"", "the", "a", "an"}:  # nothing before the bracket or subtitle
        main = _ARTICLE.sub("", _plain(text)) or _plain(text)
    names = [w for w in _plain(author).split() if len(w) > 2]
    return main, names[-1] if names else _plain(author)


def _item_counts(data: EventsData, skip_user: Callable[[str], bool] | None) -> Counter[str]:
    """Events per item, leaving out the events of users ``skip_user`` names."""
    items = data.events.column("item_id").to_pylist()
    if skip_user is None:
        return Counter(i for i in items if i is not None)
    users = data.events.column("user_id").to_pylist()
    skipped = {u for u in set(users) if skip_user(u)}
    return Counter(
        i for i, u in zip(items, users, strict=True) if i is not None and u not in skipped
    )


def without_books(data: EventsData, books: list[Book]) -> tuple[EventsData, int]:
    """``data`` without the events on ``books``, and how many were set aside: profiles inferred
    from it never saw those books. An item is one of the books by catalog id (a catalog built
    from these events) or by its work (``work_key``: another edition, or a catalog from
    elsewhere); an item without an author, by its title alone."""
    import dataclasses

    import pyarrow as pa

    if not books or data.events.num_rows == 0:
        return data, 0
    ids = {b.id for b in books}
    works = {work_key(b.title, b.author) for b in books}
    titles = {title for title, _ in works}

    def held(row: dict) -> bool:
        key = work_key(row["title"], row["author"])
        return key in works or (not key[1] and key[0] in titles)

    dropped = {
        row["id"]
        for row in data.items.select(["id", "title", "author"]).to_pylist()
        if book_id(row["id"]) in ids or held(row)
    }
    keep = [
        item is None or (item not in dropped and book_id(item) not in ids)
        for item in data.events.column("item_id").to_pylist()
    ]
    events = data.events.filter(pa.array(keep, type=pa.bool_()))
    return dataclasses.replace(data, events=events), data.events.num_rows - events.num_rows


def books_from_events(
    data: EventsData,
    top: int = 200,
    min_events: int = 1,
    skip_user: Callable[[str], bool] | None = None,
) -> list[Book]:
    """The ``top`` works with the most events on their editions (at least ``min_events``) that
    have a title and an author, as ``Book``s, one per work (its most rated edition): categories
    become genres; a description only where the data has one (10-4000 characters), else None
    and the prompts work from title, author and year. Events of users for whom ``skip_user`` is
    true are not counted (held-out readers choose no book)."""
    items = {row["id"]: row for row in data.items.to_pylist()}
    books: list[Book] = []
    seen: set[str] = set()
    for item_id, n in _work_counts(_item_counts(data, skip_user), items):
        if n < min_events or len(books) >= top:
            break
        item = items[item_id]
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


def _work_counts(counts: Counter[str], items: dict[str, dict]) -> list[tuple[str, int]]:
    """(item id, events on every edition of its work), most first: one entry per work with a
    title and an author, named by its edition with the most events (ties: the smallest id)."""
    works: dict[tuple[str, str], tuple[int, str, int]] = {}
    for item_id, n in counts.items():
        item = items.get(item_id)
        if not item or not item["title"] or not item["author"]:
            continue
        key = work_key(item["title"], item["author"])
        total, best, best_n = works.get(key, (0, item_id, n))
        if (-n, item_id) < (-best_n, best):
            best, best_n = item_id, n
        works[key] = (total + n, best, best_n)
    ranked = sorted(works.values(), key=lambda w: (-w[0], w[1]))
    return [(best, total) for total, best, _ in ranked]
