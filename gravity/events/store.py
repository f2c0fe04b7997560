"""Collecting imported rows (validated, rejects counted) and the events folder on disk (parquet)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from gravity.errors import GravityError, first_problem
from gravity.events.models import Event, Item, Meta, Reject, User
from gravity.io import read_parquet, remove_dead_dirs, swap_dir_into_place, temp_dir

USERS, ITEMS, EVENTS, REJECTS, META = (
    "users.parquet",
    "items.parquet",
    "events.parquet",
    "rejects.jsonl",
    "meta.json",
)

_STR = pa.string()
SCHEMAS: dict[str, pa.Schema] = {
    USERS: pa.schema([("id", _STR), ("location", _STR), ("country", _STR), ("age", pa.int16())]),
    ITEMS: pa.schema(
        [
            ("id", _STR),
            ("isbn", _STR),
            ("title", _STR),
            ("author", _STR),
            ("year", pa.int16()),
            ("publisher", _STR),
            ("description", _STR),
            ("categories", pa.list_(_STR)),
        ]
    ),
    EVENTS: pa.schema(
        [
            ("user_id", _STR),
            ("kind", _STR),
            ("action", _STR),
            ("item_id", _STR),
            ("other_user_id", _STR),
            ("value", pa.float32()),
            ("text", _STR),
            ("shelves", pa.list_(_STR)),
            ("timestamp", pa.timestamp("s", tz="UTC")),
        ]
    ),
}


class EventsFileError(GravityError):
    """A malformed input file: the message names the file (and line and field where known)."""


@dataclass
class Collector:
    """Validated users, items and events of one import, and the rows it rejected.

    Every input row goes through ``add`` or ``reject`` exactly once, so per file
    rows in = imported + rejected holds by construction.
    """

    format: str
    rating_min: float | None = None
    rating_max: float | None = None
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    rows_in: Counter[str] = field(default_factory=Counter)
    imported: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    sources: list[str] = field(default_factory=list)

    def reject(self, file: str, line: int, kind: str, reason: str) -> None:
        """Count one input row as rejected, with its reason."""
        self.rows_in[file] += 1
        self.rejects.append(Reject(file=file, line=line, kind=kind, reason=reason))

    def add(
        self,
        file: str,
        line: int,
        users: tuple[dict[str, Any], ...] = (),
        items: tuple[dict[str, Any], ...] = (),
        events: tuple[dict[str, Any], ...] = (),
        merge_items: bool = False,
    ) -> bool:
        """Validate one input row's records and keep them all, or reject the row (first reason).

        A duplicate user or item id is a reject, unless ``merge_items`` (then a repeated item
        fills the fields the first one left empty). A rating outside the scale is a reject.
        """
        try:
            new_users = [User.model_validate(u) for u in users]
            new_items = [Item.model_validate(i) for i in items]
            new_events = [Event.model_validate(e) for e in events]
        except ValidationError as exc:
            self.reject(file, line, "invalid_field", first_problem(exc, empty="<row>"))
            return False
        for user in new_users:
            if user.id in self.users:
                self.reject(file, line, "duplicate_user", f"id: duplicate user id '{user.id}'")
                return False
        if not merge_items:
            for item in new_items:
                if item.id in self.items:
                    self.reject(file, line, "duplicate_item", f"id: duplicate item id '{item.id}'")
                    return False
        for event in new_events:
            value = event.value
            low, high = self.rating_min, self.rating_max
            if value is not None and (
                (low is not None and value < low) or (high is not None and value > high)
            ):
                self.reject(
                    file,
                    line,
                    "rating_out_of_range",
                    f"value: rating {value:g} outside {low:g}-{high:g}",
                )
                return False
        self.rows_in[file] += 1
        self.imported[file] += 1
        for user in new_users:
            self.users[user.id] = user.model_dump()
        for item in new_items:
            row = item.model_dump()
            old = self.items.get(item.id)
            if old is None:
                self.items[item.id] = row
                continue
            for key, value in row.items():
                if old.get(key) in (None, []) and value not in (None, []):
                    old[key] = value
        self.events.extend(e.model_dump() for e in new_events)
        return True

    def finish(self) -> None:
        """Users known only from events get a bare record (counted in ``notes``)."""
        referenced = {e["user_id"] for e in self.events}
        referenced |= {e["other_user_id"] for e in self.events if e["other_user_id"]}
        for uid in sorted(referenced - set(self.users)):
            self.users[uid] = User(id=uid).model_dump()
            self.notes["users_known_only_from_events"] += 1
        unknown = sum(1 for e in self.events if e["item_id"] and e["item_id"] not in self.items)
        if unknown:
            self.notes["events_with_item_missing_from_metadata"] = unknown

    def meta(self) -> Meta:
        """The import summary written to ``meta.json``."""
        return Meta(
            format=self.format,
            sources=self.sources,
            rating_min=self.rating_min,
            rating_max=self.rating_max,
            rows_in=dict(self.rows_in),
            imported=dict(self.imported),
            rejected=dict(Counter(r.file for r in self.rejects)),
            rejects_by_reason=dict(Counter(r.kind for r in self.rejects).most_common()),
            notes=dict(self.notes),
        )


def write_events_dir(collector: Collector, out: str | Path) -> Meta:
    """Write the collected data as an events folder, swapped in atomically; return its meta."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GravityError(f"{out}: exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_dirs(out)  # what a killed import into ``out`` left
    tmp = temp_dir(out.parent, f".{out.name}.tmp-")
    try:
        tables = {
            USERS: list(collector.users.values()),
            ITEMS: list(collector.items.values()),
            EVENTS: collector.events,
        }
        for name, rows in tables.items():
            table = pa.Table.from_pylist(rows, schema=SCHEMAS[name])
            pq.write_table(table, tmp / name)
        with open(tmp / REJECTS, "w", encoding="utf-8") as f:
            for r in collector.rejects:
                f.write(r.model_dump_json() + "\n")
        meta = collector.meta()
        (tmp / META).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
        swap_dir_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


@dataclass
class EventsData:
    """An events folder in memory: pyarrow tables plus the import meta."""

    path: Path
    users: pa.Table
    items: pa.Table
    events: pa.Table
    meta: Meta


def read_events_dir(path: str | Path) -> EventsData:
    """Load an events folder written by ``gravity events import``; errors name the file."""
    path = Path(path)
    if not path.is_dir():
        raise GravityError(f"{path}: not an events folder (run `gravity events import` first)")
    try:
        meta = Meta.model_validate_json((path / META).read_text(encoding="utf-8"))
    except OSError as exc:
        raise GravityError(f"{path / META}: cannot read: {exc.strerror or exc}") from None
    except ValidationError as exc:
        raise GravityError(f"{path / META}: {first_problem(exc, Meta, '<row>')}") from None
    tables = {n: read_parquet(path / n, SCHEMAS[n].names) for n in (USERS, ITEMS, EVENTS)}
    return EventsData(path, tables[USERS], tables[ITEMS], tables[EVENTS], meta)


def iter_rejects(path: str | Path) -> list[dict[str, Any]]:
    """The rejects of an events folder (for reports and tests)."""
    lines = (Path(path) / REJECTS).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
