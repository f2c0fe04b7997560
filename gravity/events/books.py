"""A catalog from an events folder's items (for synthesis and evaluation on real readers),
validated against the task's item schema.

Events items are what the importers read (``gravity events import``): an id, and where the
source has them a title, an author, a year, a publisher, a description and categories. The
task says which of its fields come from which of these (task.yaml ``events.fields``); a field
no column fills stays empty, the other columns become free attributes where the schema keeps
extra columns, and a task with a required field no column fills cannot build a catalog from
events (one line naming task.yaml and the field). Items are grouped by work
(``work_key``: editions of one book are one entry) and ranked by their events.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from gravity.errors import GravityError
from gravity.events.store import EventsData
from gravity.items import Item
from gravity.taskspec import EVENTS_COLUMNS, Task, load_task

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


def _title_author(item: Item, task: Task) -> tuple[str | None, str | None]:
    """The title and author of a catalog item: its fields that come from those events columns
    (the book task: title, author), else its title field and no author."""
    by_column = {column: name for name, column in task.spec.events_fields().items()}
    title = getattr(item, by_column.get("title", task.spec.item.title_field), None)
    author = getattr(item, by_column["author"], None) if "author" in by_column else None
    return _text(title), _text(author)


def _text(value: object) -> str | None:
    """A field's text for ``work_key``: a list field's first entry, a number as text."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else str(value)


def without_books(
    data: EventsData, books: list[Item], task: Task | None = None
) -> tuple[EventsData, int]:
    """``data`` without the events on ``books`` (items of ``task``, default the book task), and
    how many were set aside: profiles inferred from it never saw those items. An events item is
    one of them by catalog id (a catalog built from these events) or by its work
    (``work_key``: another edition, or a catalog from elsewhere); an item without an author, by
    its title alone."""
    import dataclasses

    import pyarrow as pa

    if not books or data.events.num_rows == 0:
        return data, 0
    task = task if task is not None else load_task()
    ids = {b.id for b in books}
    works = {work_key(*_title_author(b, task)) for b in books}
    # A catalog built from these events: its items' titles as the events spell them (a task's
    # title field may be cut short or come from another column).
    works |= {
        work_key(row["title"], row["author"])
        for row in data.items.select(["id", "title", "author"]).to_pylist()
        if book_id(row["id"]) in ids
    }
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
) -> list[Item]:
    """``items_from_events`` for the book task."""
    return items_from_events(data, load_task(), top, min_events, skip_user)


def items_from_events(
    data: EventsData,
    task: Task,
    top: int | None = None,
    min_events: int = 1,
    skip_user: Callable[[str], bool] | None = None,
) -> list[Item]:
    """The ``top`` works (default: the task's ``max_catalog_items``) with the most events on
    their editions (at least ``min_events``) that have every column a required field comes
    from, as items of the task's schema, one per work (its most rated edition). Text longer
    than a field allows is cut (a description at a word, ending ' ...'), shorter than it needs
    is left out; categories fill a list field (the first 5) or a str field (the first). Events
    of users for whom ``skip_user`` is true are not counted (held-out readers choose no item).
    For the book task: title and author needed, categories become genres, a description only
    where the data has one of 10-4000 characters (else the prompts work from title, author and
    year)."""
    mapping = task.events_fields()  # a required field without a column fails here
    schema = task.spec.item
    required = [n for n in mapping if schema.fields[n].required]
    needed = {mapping[n] for n in required}
    model = schema.model()
    top = task.spec.max_catalog_items if top is None else top
    items = {row["id"]: row for row in data.items.to_pylist()}
    out: list[Item] = []
    seen: set[str] = set()
    for item_id, n in _work_counts(_item_counts(data, skip_user), items, needed):
        if n < min_events or len(out) >= top:
            break
        bid = book_id(item_id)
        if bid in seen:
            continue
        row = _row(items[item_id], mapping, task)
        if any(row[name] is None for name in required):
            continue  # a required value too short for its field
        seen.add(bid)
        out.append(_validated(model, {schema.id_field: bid, **row}, data, item_id, mapping))
    return out


def _row(item: dict[str, Any], mapping: dict[str, str], task: Task) -> dict[str, Any]:
    """The values of an events item under the task's field names, fitted to each field; with
    ``extra_columns: keep``, the other non-empty columns as free attributes (text)."""
    schema = task.spec.item
    row = {n: _fitted(item[c], c, schema.fields[n]) for n, c in mapping.items()}
    if schema.extra_columns == "keep":
        used = set(mapping.values()) | set(schema.fields) | {"id"}
        for column in EVENTS_COLUMNS:
            value = item.get(column)
            if column not in used and value not in (None, "", []):
                row[column] = "; ".join(value) if isinstance(value, list) else str(value)
    return row


def _fitted(value: Any, column: str, spec: Any) -> Any:
    """An events value as a field of type ``spec.type`` within its length limits (None: left
    out)."""
    if isinstance(value, list):
        value = tuple(value)[:5] if spec.type == "list" else (value[0] if value else None)
    elif spec.type == "list":
        value = () if value is None else (value,)
    if spec.type == "str" and value is not None:
        value = str(value)
        if spec.max_length is not None and len(value) > spec.max_length:
            cut = column == "description" and spec.max_length > 20
            value = (
                value[: spec.max_length - 10].rsplit(" ", 1)[0] + " ..."
                if cut
                else value[: spec.max_length]
            )
        if spec.min_length is not None and len(value) < spec.min_length:
            value = None
    return value


def _validated(
    model: Any, row: dict[str, Any], data: EventsData, item_id: str, mapping: dict[str, str]
) -> Item:
    """``row`` as an item of the task; a value the schema refuses is one line naming the
    events file, the item and the field."""
    try:
        return model.model_validate(row)  # type: ignore[no-any-return]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        source = f" (from the events column '{mapping[field]}')" if field in mapping else ""
        raise GravityError(
            f"{data.path / 'items.parquet'}: item '{item_id}': {field}{source}: {err['msg']}"
        ) from None


def _work_counts(
    counts: Counter[str], items: dict[str, dict], needed: set[str]
) -> list[tuple[str, int]]:
    """(item id, events on every edition of its work), most first: one entry per work whose
    items have every ``needed`` column, named by its edition with the most events (ties: the
    smallest id). An item without a title is a work of its own."""
    works: dict[tuple[str, str], tuple[int, str, int]] = {}
    for item_id, n in counts.items():
        item = items.get(item_id)
        if not item or any(not item[c] for c in needed):
            continue
        key = work_key(item["title"], item["author"]) if item["title"] else ("#", item_id)
        total, best, best_n = works.get(key, (0, item_id, n))
        if (-n, item_id) < (-best_n, best):
            best, best_n = item_id, n
        works[key] = (total + n, best, best_n)
    ranked = sorted(works.values(), key=lambda w: (-w[0], w[1]))
    return [(best, total) for total, best, _ in ranked]
