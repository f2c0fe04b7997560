"""One importer per source format; ``import_events`` runs one and writes the events folder."""

from __future__ import annotations

from pathlib import Path

from gravity.errors import GravityError
from gravity.events.models import Meta
from gravity.events.store import Collector, EventsFileError, write_events_dir

FORMATS = ("bookcrossing", "goodreads", "goodbooks", "amazon", "events")


def import_events(
    format: str,
    paths: list[Path],
    out: Path,
    user_id: str = "goodreads-reader",
    rating_min: float = 1.0,
    rating_max: float = 5.0,
) -> Meta:
    """Read ``paths`` in ``format`` and write the events folder ``out`` (atomically).

    A malformed file raises ``EventsFileError`` (one line naming the file) before anything is
    written; bad rows are rejected and counted in the folder's ``meta.json`` and ``rejects.jsonl``.
    """
    if format not in FORMATS:
        raise GravityError(f"--format: unknown format '{format}'; valid: {', '.join(FORMATS)}")
    if not paths:
        raise GravityError("give at least one PATH")
    for path in paths:
        if not path.exists():
            raise EventsFileError(f"{path}: no such file or folder")
    single = {"bookcrossing", "goodreads", "goodbooks", "events"}
    if format in single and len(paths) != 1:
        raise GravityError(f"--format {format}: takes one PATH, got {len(paths)}")
    collector = Collector(format=format)
    if format == "bookcrossing":
        from gravity.events.importers.bookcrossing import import_bookcrossing

        import_bookcrossing(paths[0], collector)
    elif format == "goodreads":
        from gravity.events.importers.goodreads import import_goodreads

        if paths[0].is_dir():
            raise EventsFileError(f"{paths[0]}: expected the exported CSV file, got a folder")
        import_goodreads(paths[0], collector, user_id=user_id)
    elif format == "goodbooks":
        from gravity.events.importers.goodbooks import import_goodbooks

        import_goodbooks(paths[0], collector)
    elif format == "amazon":
        from gravity.events.importers.amazon import import_amazon

        for path in paths:
            if path.is_dir():
                raise EventsFileError(f"{path}: expected a JSONL file, got a folder")
        import_amazon(paths, collector)
    else:
        from gravity.events.importers.generic import import_generic

        import_generic(paths[0], collector, rating_min, rating_max)
    collector.finish()
    return write_events_dir(collector, out)


__all__ = ["FORMATS", "EventsFileError", "import_events"]
