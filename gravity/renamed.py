"""Names that changed when tasks became data (issue 22): ``book`` became ``item``.

An old config field or flag is refused with one line naming the new one (README, "Changes"),
never silently ignored or accepted beside the new one.
"""

from __future__ import annotations

from typing import Any

RENAMED_FIELDS: dict[str, str] = {
    "max_books": "max_items",
    "book_selection": "item_selection",
    "books": "catalog",
    "heldout_books": "heldout_items",
    "books_per_reader": "items_per_reader",
}
"""Old config field -> new field (the same in YAML and, kebab-cased, as a flag)."""

RENAMED_FLAGS: dict[str, str] = {"--book": "--item"}
"""Old flags that are no config field (``gravity prompt``)."""


def refuse_renamed(data: Any, fields: set[str]) -> Any:
    """``data`` unchanged, or a ValueError naming the first old field of ``fields`` it holds."""
    if isinstance(data, dict):
        for old, new in RENAMED_FIELDS.items():
            if old in data and new in fields:
                raise ValueError(f"'{old}' was renamed '{new}' (tasks have items, not only books)")
    return data


def upgrade_renamed(data: Any) -> Any:
    """``data`` (a config recorded before the rename, e.g. in an old report) with each old field
    under its new name: records are read as written, only users' configs are refused."""
    if not isinstance(data, dict):
        return data
    return {
        RENAMED_FIELDS.get(k, k) if RENAMED_FIELDS.get(k) not in data else k: v
        for k, v in data.items()
    }


def renamed_flag(option: str) -> str | None:
    """The new name of an old flag (``--generate.max-books`` -> ``--generate.max-items``)."""
    if option in RENAMED_FLAGS:
        return RENAMED_FLAGS[option]
    prefix, _, last = option.rpartition(".")
    name = last.lstrip("-").replace("-", "_")
    new = RENAMED_FIELDS.get(name)
    if new is None:
        return None
    head = f"{prefix}." if prefix else "--"
    return head + new.replace("_", "-")
