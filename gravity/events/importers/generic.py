"""The generic ``events`` format, for any source the other importers do not read.

``PATH`` is a folder with ``events.csv`` or ``events.jsonl`` (required), and optionally
``users.csv|jsonl`` and ``items.csv|jsonl``. Columns are the fields of the models in
``gravity.events.models`` (unknown columns are an error, so a typo cannot drop data silently):

- users: ``id`` (required), ``location``, ``country``, ``age``;
- items: ``id`` (required), ``isbn``, ``title``, ``author``, ``year``, ``publisher``,
  ``description``, ``categories``;
- events: ``user_id``, ``kind`` (``personal`` | ``relational``), ``action`` (required), then
  ``item_id`` (required for personal events), ``other_user_id`` (required for relational events),
  ``value`` (a rating within ``--rating-min``..``--rating-max``), ``text``, ``shelves``,
  ``timestamp`` (ISO 8601, or unix seconds / milliseconds).

In CSV (UTF-8, comma-separated, header row), list fields (``categories``, ``shelves``) are
separated by ``;``. In JSONL they are JSON lists. A user's ``country`` may be any spelling the
profiles accept; when absent it is resolved from ``location`` ("city, region, country").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gravity.events.importers.common import csv_rows, jsonl_rows, open_text, parse_time
from gravity.events.location import country_from_location
from gravity.events.models import Event, Item, User
from gravity.events.store import Collector, EventsFileError
from gravity.profiles.countries import UnknownCountryError, normalize_country

TABLES = {"users": User, "items": Item, "events": Event}
LIST_FIELDS = ("categories", "shelves")


def _find(folder: Path, table: str) -> Path | None:
    found = [
        folder / f"{table}.{ext}"
        for ext in ("csv", "jsonl")
        if (folder / f"{table}.{ext}").is_file()
    ]
    if len(found) > 1:
        raise EventsFileError(f"{folder}: both {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None


def _rows(path: Path, table: str):
    allowed = tuple(TABLES[table].model_fields)
    required = tuple(n for n, f in TABLES[table].model_fields.items() if f.is_required())
    if path.suffix == ".jsonl":
        for line, record in jsonl_rows(path):
            unknown = [k for k in record if k not in allowed]
            if unknown:
                raise EventsFileError(
                    f"{path}:{line}: {unknown[0]}: unknown field; allowed: {', '.join(allowed)}"
                )
            yield line, None, record
        return
    with open_text(path, "utf-8-sig") as stream:
        for line, problem, row in csv_rows(str(path), stream, required, allowed):
            if problem is None:
                row = {k: (v if v.strip() else None) for k, v in row.items()}
                for key in LIST_FIELDS:
                    if key in row:
                        row[key] = [p.strip() for p in (row[key] or "").split(";") if p.strip()]
            yield line, problem, row


def _user(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    if row.get("country"):
        try:
            row["country"] = normalize_country(str(row["country"]))
        except UnknownCountryError as exc:
            raise ValueError(f"country: {exc}") from None
    else:
        row["country"] = country_from_location(row.get("location"))
    return row


def _event(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    try:
        row["timestamp"] = parse_time(row.get("timestamp"))
    except ValueError as exc:
        raise ValueError(f"timestamp: {exc}") from None
    return row


def import_generic(
    folder: Path, collector: Collector, rating_min: float = 1.0, rating_max: float = 5.0
) -> None:
    """Read a generic events folder into ``collector``."""
    if not folder.is_dir():
        raise EventsFileError(f"{folder}: expected a folder with events.csv or events.jsonl")
    if rating_min >= rating_max:
        raise EventsFileError(
            f"--rating-min {rating_min:g} must be below --rating-max {rating_max:g}"
        )
    collector.rating_min, collector.rating_max = rating_min, rating_max
    paths = {table: _find(folder, table) for table in TABLES}
    if paths["events"] is None:
        raise EventsFileError(f"{folder}: no events.csv or events.jsonl")
    for table in ("users", "items", "events"):
        path = paths[table]
        if path is None:
            continue
        name = str(path)
        collector.sources.append(name)
        for line, problem, row in _rows(path, table):
            if problem is not None:
                collector.reject(name, line, "field_count", problem)
                continue
            try:
                if table == "users":
                    collector.add(name, line, users=(_user(row),))
                elif table == "items":
                    collector.add(name, line, items=(row,))
                else:
                    collector.add(name, line, events=(_event(row),))
            except ValueError as exc:
                collector.reject(name, line, "invalid_field", str(exc))
