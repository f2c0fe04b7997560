"""Amazon Reviews 2023 (McAuley Lab), e.g. the Books category: reviews and item metadata, JSONL
(optionally ``.gz``).

- reviews: ``user_id``, ``parent_asin`` (the item), ``rating`` (1-5), ``title``, ``text``,
  ``timestamp`` (unix ms), ``helpful_vote``, ``verified_purchase``, ``asin``;
- metadata: ``parent_asin``, ``title``, ``description`` (list of paragraphs), ``categories``
  (a path from the top category), ``details`` (Publisher, publication date ...), ``author``.

Each path given is recognised by its first record (``user_id`` = reviews, else metadata).
A review is a ``review`` event (title and text joined) or a ``rate`` event when it has no text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gravity.events.importers.common import jsonl_rows, parse_time
from gravity.events.store import Collector, EventsFileError

_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")


def _kind(path: Path) -> str:
    for _, record in jsonl_rows(path):
        return "reviews" if "user_id" in record else "meta"
    raise EventsFileError(f"{path}: empty file")


def import_amazon(paths: list[Path], collector: Collector) -> None:
    """Read Amazon reviews and metadata files into ``collector`` (ratings on a 1-5 scale)."""
    collector.rating_min, collector.rating_max = 1.0, 5.0
    kinds = {path: _kind(path) for path in paths}
    if "reviews" not in kinds.values():
        raise EventsFileError(f"{paths[0]}: no reviews file given (records with user_id)")
    # Metadata first, so that later readers of the folder see items before events.
    for path in sorted(paths, key=lambda p: kinds[p] != "meta"):
        name = str(path)
        collector.sources.append(name)
        for line, record in jsonl_rows(path):
            try:
                if kinds[path] == "meta":
                    collector.add(name, line, items=(_item(record),), merge_items=True)
                else:
                    collector.add(name, line, events=(_event(record),))
            except (KeyError, ValueError, TypeError) as exc:
                reason = str(exc) if not isinstance(exc, KeyError) else f"{exc.args[0]}: missing"
                collector.reject(name, line, "invalid_field", reason)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = "\n".join(str(v) for v in value if v)
    return str(value).strip() or None


def _item(record: dict[str, Any]) -> dict[str, Any]:
    details = record.get("details") or {}
    if not isinstance(details, dict):
        raise ValueError("details: not an object")
    author = record.get("author")
    if isinstance(author, dict):
        author = author.get("name")
    year = None
    for key in ("Publication date", "publication_date", "Publisher"):
        match = _YEAR.search(str(details.get(key, "")))
        if match:
            year = int(match.group(1))
            break
    publisher = details.get("Publisher") or details.get("publisher")
    if publisher:
        # "Vintage; Reprint edition (May 1, 2000)" -> "Vintage"
        publisher = re.split(r"[;(]", str(publisher))[0].strip() or None
    categories = record.get("categories") or []
    if not isinstance(categories, list):
        raise ValueError("categories: not a list")
    return {
        "id": str(record["parent_asin"]),
        "title": _text(record.get("title")),
        "author": _text(author),
        "year": year,
        "publisher": publisher,
        "description": _text(record.get("description")),
        # The top category ("Books") says nothing about a reader.
        "categories": [str(c) for c in categories if str(c) not in ("Books", "Kindle Store")],
    }


def _event(record: dict[str, Any]) -> dict[str, Any]:
    title, text = _text(record.get("title")), _text(record.get("text"))
    body = "\n".join(t for t in (title, text) if t) or None
    rating = record.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, (int, float, type(None))):
        raise ValueError(f"rating: not a number: {rating!r}")
    try:
        timestamp = parse_time(record.get("timestamp"))
    except ValueError as exc:
        raise ValueError(f"timestamp: {exc}") from None
    return {
        "user_id": str(record["user_id"]),
        "kind": "personal",
        "action": "review" if body else "rate",
        "item_id": str(record["parent_asin"] if record.get("parent_asin") else record["asin"]),
        "value": rating,
        "text": body,
        "timestamp": timestamp,
    }
