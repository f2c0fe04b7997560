"""goodbooks-10k (Zajac 2017): Goodreads ratings of many readers, with the shelves readers put
each book on.

``PATH`` is a folder holding (as the dataset ships them, comma-separated UTF-8):

- ``books.csv`` (required): ``book_id`` (the id the other files use), ``goodreads_book_id``,
  ``authors``, ``title``; ``isbn``, ``original_publication_year`` and ``original_title`` are
  read when present. ISBN-10s that lost up to three leading zeros to a spreadsheet
  (``553296981``) are padded back when the padded number passes the ISBN-10 check (else the
  book is kept without one, counted under ``notes``); ``isbn13`` is not read (the
  dataset stores it as a float, which has lost its last digits).
- ``ratings.csv`` (required): ``user_id``, ``book_id``, ``rating`` (1-5 stars) -> ``rate``.
- ``to_read.csv`` (optional): ``user_id``, ``book_id`` -> ``shelve`` on ``to-read``.
- ``book_tags.csv`` with ``tags.csv`` (optional, both or neither): ``goodreads_book_id``,
  ``tag_id``, ``count`` and ``tag_id``, ``tag_name``. A book's shelves become its item
  ``categories``, the most used first (ties by name; a shelf named twice, ignoring case, keeps
  its most used row; at most ``MAX_CATEGORIES``, the rest rejected as ``shelves_over_cap``):
  the item text that the intent extractor and the profile inference read. Counts and ratings
  must be whole numbers (``4.5`` is a reject, not 4). Goodreads' status shelves (``to-read``,
  ``currently-reading``, ``read``, in any case and spacing) say where a reader is with a book,
  not what it is: their rows are rejected with kind ``status_shelf``.

The dataset has no timestamps and nothing about its readers but their ids: every reader is a
bare user record (counted under ``notes``).
"""

from __future__ import annotations

import re
from pathlib import Path

from gravity.events.importers.common import csv_rows, open_text, parse_int
from gravity.events.models import MAX_CATEGORIES
from gravity.events.store import Collector, EventsFileError

FILES = {
    "books": ("books.csv", ("book_id", "goodreads_book_id", "authors", "title")),
    "ratings": ("ratings.csv", ("user_id", "book_id", "rating")),
    "to_read": ("to_read.csv", ("user_id", "book_id")),
    "tags": ("tags.csv", ("tag_id", "tag_name")),
    "book_tags": ("book_tags.csv", ("goodreads_book_id", "tag_id", "count")),
}
STATUS_SHELVES = frozenset({"to-read", "currently-reading", "read"})


def _status_key(tag: str) -> str:
    """ "To Read", "to_read" and "to-read" alike."""
    return re.sub(r"[\s_]+", "-", tag.casefold())


def _sources(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise EventsFileError(
            f"{folder}: expected the goodbooks-10k folder (books.csv, ratings.csv)"
        )
    found = {key: folder / name for key, (name, _) in FILES.items() if (folder / name).exists()}
    for path in found.values():
        if not path.is_file():
            raise EventsFileError(f"{path}: not a file")
    for key in ("books", "ratings"):
        if key not in found:
            raise EventsFileError(f"{folder / FILES[key][0]}: missing (goodbooks-10k needs it)")
    if ("tags" in found) != ("book_tags" in found):
        have, lack = ("tags", "book_tags") if "tags" in found else ("book_tags", "tags")
        raise EventsFileError(
            f"{folder / FILES[lack][0]}: missing ({FILES[have][0]} is there; shelves need both)"
        )
    return found


_ASCII_DIGITS = frozenset("0123456789")


def isbn10(value: str) -> str | None:
    """An ISBN-10 from the dataset's ``isbn`` column, with up to three leading zeros a
    spreadsheet dropped restored; None unless the result passes the ISBN-10 check digit."""
    text = value.strip().upper()
    if not 7 <= len(text) <= 10 or not set(text[:-1]) <= _ASCII_DIGITS:
        return None
    if text[-1] not in _ASCII_DIGITS and text[-1] != "X":
        return None
    text = text.zfill(10)
    digits = [10 if c == "X" else int(c) for c in text]
    if sum((10 - i) * d for i, d in enumerate(digits)) % 11:
        return None
    return text


def import_goodbooks(folder: Path, collector: Collector) -> None:
    """Read a goodbooks-10k folder into ``collector`` (ratings on a 1-5 scale)."""
    collector.rating_min, collector.rating_max = 1.0, 5.0
    sources = _sources(folder)
    goodreads_ids = _books(sources["books"], collector)
    for key, action in (("ratings", "rate"), ("to_read", "shelve")):
        if key in sources:
            _events(sources[key], key, action, collector)
    if "tags" in sources:
        names = _tags(sources["tags"], collector)
        _book_tags(sources["book_tags"], names, goodreads_ids, collector)


def _rows(path: Path, key: str, collector: Collector):
    name = str(path)
    collector.sources.append(name)
    with open_text(path, "utf-8-sig") as stream:
        yield from ((name, *row) for row in csv_rows(name, stream, FILES[key][1]))


def _books(path: Path, collector: Collector) -> dict[str, str]:
    """Items from ``books.csv``; returns goodreads_book_id -> book_id."""
    goodreads_ids: dict[str, str] = {}
    for name, line, bad, row in _rows(path, "books", collector):
        if bad is not None:
            collector.reject(name, line, "field_count", bad)
            continue
        try:
            year = parse_int(row.get("original_publication_year"))
        except ValueError:
            year = None
            collector.notes["year_unparsable_dropped"] += 1
        if year is not None and not 1 <= year <= 2100:  # BC years are stored as negatives
            collector.notes["year_out_of_range_dropped"] += 1
            year = None
        raw_isbn = row.get("isbn", "").strip()
        isbn = isbn10(raw_isbn)
        if raw_isbn and isbn is None:
            collector.notes["isbn_invalid_dropped"] += 1
        book_id = row["book_id"].strip()
        title = row["title"].strip() or row.get("original_title", "").strip() or None
        author = row["authors"].strip() or None
        item = {"id": book_id, "isbn": isbn, "title": title, "author": author, "year": year}
        goodreads_id = row["goodreads_book_id"].strip()
        if collector.add(name, line, items=(item,)) and goodreads_id:
            if goodreads_id in goodreads_ids:
                collector.notes["goodreads_book_id_repeated"] += 1
            goodreads_ids.setdefault(goodreads_id, book_id)
    return goodreads_ids


def _events(path: Path, key: str, action: str, collector: Collector) -> None:
    for name, line, bad, row in _rows(path, key, collector):
        if bad is not None:
            collector.reject(name, line, "field_count", bad)
            continue
        event = {
            "user_id": row["user_id"].strip(),
            "kind": "personal",
            "action": action,
            "item_id": row["book_id"].strip(),
        }
        if action == "rate":
            try:
                rating = parse_int(row["rating"])
            except ValueError:
                rating = None
            if rating is None:
                collector.reject(
                    name, line, "invalid_field", f"rating: not a whole number: {row['rating']!r}"
                )
                continue
            event["value"] = float(rating)
        else:
            event["shelves"] = ["to-read"]
        collector.add(name, line, events=(event,))


def _tags(path: Path, collector: Collector) -> dict[str, str]:
    names: dict[str, str] = {}
    for name, line, bad, row in _rows(path, "tags", collector):
        tag_id, tag = row.get("tag_id", "").strip(), " ".join(row.get("tag_name", "").split())
        if bad is not None:
            collector.reject(name, line, "field_count", bad)
        elif not tag_id:
            collector.reject(name, line, "invalid_field", "tag_id: empty")
        elif not tag or len(tag) > 500:
            collector.reject(name, line, "invalid_field", "tag_name: empty or over 500 characters")
        elif tag_id in names:
            collector.reject(name, line, "duplicate_tag", f"tag_id: duplicate tag id '{tag_id}'")
        else:
            names[tag_id] = tag
            collector.add(name, line)
    return names


def _book_tags(
    path: Path, names: dict[str, str], goodreads_ids: dict[str, str], collector: Collector
) -> None:
    """Each book's shelves, the most used first, into its item's ``categories``."""
    for book, shelves in _shelf_rows(path, names, goodreads_ids, collector).items():
        ordered = sorted(shelves.values(), key=lambda kept: (-kept[0], kept[1]))
        for rank, (_, tag, name, line) in enumerate(ordered):
            if rank < MAX_CATEGORIES:
                collector.add(name, line)
            else:
                collector.reject(
                    name,
                    line,
                    "shelves_over_cap",
                    f"tag_name: book '{book}' has over {MAX_CATEGORIES} shelves; '{tag}' is "
                    "among the least used",
                )
        collector.items[book]["categories"] = [tag for _, tag, _, _ in ordered[:MAX_CATEGORIES]]


def _shelf_rows(
    path: Path, names: dict[str, str], goodreads_ids: dict[str, str], collector: Collector
) -> dict[str, dict[str, tuple[int, str, str, int]]]:
    """The usable rows of ``book_tags.csv``: book -> casefolded shelf -> (count, shelf, file,
    line); every other row is rejected here. A shelf named twice for one book (ignoring case)
    keeps its most used row."""
    kept: dict[str, dict[str, tuple[int, str, str, int]]] = {}
    for name, line, bad, row in _rows(path, "book_tags", collector):
        if bad is not None:
            collector.reject(name, line, "field_count", bad)
            continue
        goodreads_id, tag_id = row["goodreads_book_id"].strip(), row["tag_id"].strip()
        try:
            count = parse_int(row["count"])
        except ValueError:
            count = None
        book = goodreads_ids.get(goodreads_id)
        tag = names.get(tag_id)
        if book is None:
            collector.reject(
                name,
                line,
                "unknown_book",
                f"goodreads_book_id: '{goodreads_id}' is no book of books.csv (absent, or "
                "rejected there)",
            )
        elif tag is None:
            collector.reject(name, line, "unknown_tag", f"tag_id: '{tag_id}' not in tags.csv")
        elif count is None or count < 1:
            collector.reject(
                name, line, "invalid_field", f"count: not a positive integer: {row['count']!r}"
            )
        elif _status_key(tag) in STATUS_SHELVES:
            collector.reject(name, line, "status_shelf", f"tag_name: '{tag}' is a status shelf")
        else:
            shelves = kept.setdefault(book, {})
            earlier = shelves.get(tag.casefold())
            if earlier is not None:
                loser = (name, line) if count <= earlier[0] else earlier[2:]
                collector.reject(
                    *loser,
                    "duplicate_shelf",
                    f"tag_name: book '{book}' has '{tag}' on another, more used row",
                )
                if count <= earlier[0]:
                    continue
            shelves[tag.casefold()] = (count, tag, name, line)
    return kept
