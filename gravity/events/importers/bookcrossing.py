"""Book-Crossing (Ziegler et al. 2005): ``BX-Users.csv``, ``BX-Books.csv``, ``BX-Book-Ratings.csv``.

Every field is quoted, separated by ``;``, latin-1, CRLF; ``\\"`` escapes a quote inside a field and
titles carry HTML entities (``&amp;``). Ages are ``NULL`` or a number (out-of-range ages are
dropped, the user kept, and counted); locations read "city, region, country". Ratings 1-10 are
explicit (``rate`` events); 0 is an implicit interaction (``interact``, no value).

``PATH`` is a folder holding the three files, or a zip/wheel holding them anywhere inside.
"""

from __future__ import annotations

import html
import zipfile
from pathlib import Path

from gravity.events.importers.common import csv_rows, open_text, parse_int
from gravity.events.location import country_from_location
from gravity.events.store import Collector, EventsFileError

FILES = {
    "users": ("BX-Users.csv", ("User-ID", "Location", "Age")),
    "books": ("BX-Books.csv", ("ISBN", "Book-Title", "Book-Author", "Year-Of-Publication")),
    "ratings": ("BX-Book-Ratings.csv", ("User-ID", "ISBN", "Book-Rating")),
}
DIALECT = {"delimiter": ";", "quotechar": '"', "escapechar": "\\", "doublequote": True}


def _sources(path: Path) -> dict[str, tuple[str, Path, str | None]]:
    """Display name, file and zip member (or None) of each of the three files."""
    if path.is_dir():
        found = {}
        for key, (filename, _) in FILES.items():
            target = path / filename
            if not target.is_file():
                raise EventsFileError(
                    f"{target}: missing (a Book-Crossing folder holds {filename})"
                )
            found[key] = (str(target), target, None)
        return found
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        found = {}
        for key, (filename, _) in FILES.items():
            members = [n for n in names if n.rsplit("/", 1)[-1] == filename]
            if not members:
                raise EventsFileError(f"{path}: no {filename} inside the archive")
            found[key] = (f"{path}!{members[0]}", path, members[0])
        return found
    raise EventsFileError(f"{path}: expected a folder or a zip/wheel holding {FILES['users'][0]}")


def _text(value: str) -> str | None:
    value = html.unescape(value).strip()
    return value or None


def import_bookcrossing(path: Path, collector: Collector) -> None:
    """Read the three Book-Crossing files into ``collector`` (ratings on a 1-10 scale)."""
    collector.rating_min, collector.rating_max = 1.0, 10.0
    sources = _sources(path)
    for key in ("users", "books", "ratings"):
        name, file, member = sources[key]
        collector.sources.append(name)
        required = FILES[key][1]
        with open_text(file, "latin-1", member) as stream:
            rows = csv_rows(name, stream, required, **DIALECT)
            reader = {"users": _users, "books": _books, "ratings": _ratings}[key]
            reader(name, rows, collector)


def _users(name: str, rows, collector: Collector) -> None:
    for line, bad, row in rows:
        if bad is not None:
            collector.reject(name, line, "field_count", bad)
            continue
        try:
            age = parse_int(row["Age"])
        except ValueError:
            collector.notes["age_unparsable_dropped"] += 1
            age = None
        if age is not None and not 1 <= age <= 120:
            collector.notes["age_out_of_range_dropped"] += 1
            age = None
        location = _text(row["Location"])
        country = country_from_location(location)
        if location and country is None:
            collector.notes["country_unresolved"] += 1
        user = {"id": row["User-ID"].strip(), "location": location, "country": country, "age": age}
        collector.add(name, line, users=(user,))


def _books(name: str, rows, collector: Collector) -> None:
    for line, bad, row in rows:
        if bad is not None:
            collector.reject(name, line, "field_count", bad)
            continue
        try:
            year = parse_int(row["Year-Of-Publication"])
        except ValueError:
            year = None
            collector.notes["year_unparsable_dropped"] += 1
        if year is not None and not 1000 <= year <= 2025:
            # 0 stands for "unknown" in this dump; years after its release are errors.
            collector.notes["year_out_of_range_dropped"] += 1
            year = None
        isbn = row["ISBN"].strip().upper()
        item = {
            "id": isbn,
            "isbn": isbn if _is_isbn(isbn) else None,
            "title": _text(row["Book-Title"]),
            "author": _text(row["Book-Author"]),
            "year": year,
            "publisher": _text(row.get("Publisher", "")),
        }
        collector.add(name, line, items=(item,))


def _is_isbn(value: str) -> bool:
    return (
        len(value) == 10 and value[:9].isdigit() and (value[9].isdigit() or value[9] == "X")
    ) or (len(value) == 13 and value.isdigit())


def _ratings(name: str, rows, collector: Collector) -> None:
    for line, bad, row in rows:
        if bad is not None:
            collector.reject(name, line, "field_count", bad)
            continue
        try:
            rating = parse_int(row["Book-Rating"])
        except ValueError:
            collector.reject(
                name, line, "invalid_field", f"Book-Rating: not an integer: {row['Book-Rating']!r}"
            )
            continue
        if rating is None:
            collector.reject(name, line, "invalid_field", "Book-Rating: missing")
            continue
        event = {
            "user_id": row["User-ID"].strip(),
            "kind": "personal",
            "action": "rate" if rating != 0 else "interact",
            "item_id": row["ISBN"].strip().upper(),
            "value": float(rating) if rating != 0 else None,
        }
        if rating != 0 and not 1 <= rating <= 10:
            collector.reject(
                name, line, "rating_out_of_range", f"Book-Rating: {rating} outside 0-10"
            )
            continue
        collector.add(name, line, events=(event,))
