"""Real readers: event histories (personal and relational events), their import from public
formats, statistics, and profile inference from them."""

from __future__ import annotations

from typing import Any

from gravity.events.models import Event, Item, Meta, User

__all__ = ["Event", "EventsData", "Item", "Meta", "User", "read_events_dir"]


def __getattr__(name: str) -> Any:
    # The parquet side (pyarrow) loads only when used: configs import InferConfig from here.
    if name in ("EventsData", "read_events_dir"):
        from gravity.events import store

        return getattr(store, name)
    raise AttributeError(f"module 'gravity.events' has no attribute '{name}'")
