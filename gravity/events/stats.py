"""Summary statistics of an events folder (what `gravity events stats` prints)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow.compute as pc

from gravity.events.store import EventsData


def events_stats(data: EventsData, min_ratings: int = 10, top: int = 10) -> dict[str, Any]:
    """Counts of users, items and events; ratings; readers per country (all and active).

    ``active`` readers have at least ``min_ratings`` rated events.
    """
    ev = data.events
    users = data.users
    countries = dict(zip(users.column("id").to_pylist(), users.column("country").to_pylist()))
    kinds = Counter(ev.column("kind").to_pylist())
    actions = Counter(ev.column("action").to_pylist())
    values = ev.column("value")
    rated_mask = pc.is_valid(values)
    rated_users = Counter(pc.filter(ev.column("user_id"), rated_mask).to_pylist())
    histogram = Counter(pc.filter(values, rated_mask).to_pylist())
    per_country: Counter[str] = Counter()
    active: Counter[str] = Counter()
    for uid, n in rated_users.items():
        code = countries.get(uid) or "unknown"
        per_country[code] += 1
        if n >= min_ratings:
            active[code] += 1
    timestamps = pc.drop_null(ev.column("timestamp"))
    items = data.items
    return {
        "format": data.meta.format,
        "users": users.num_rows,
        "users_with_country": users.num_rows - users.column("country").null_count,
        "users_with_age": users.num_rows - users.column("age").null_count,
        "items": items.num_rows,
        "items_with_description": items.num_rows - items.column("description").null_count,
        "items_with_categories": sum(1 for c in items.column("categories").to_pylist() if c),
        "events": ev.num_rows,
        "events_by_kind": dict(kinds.most_common()),
        "events_by_action": dict(actions.most_common()),
        "events_with_text": ev.num_rows - ev.column("text").null_count,
        "ratings": {f"{k:g}": histogram[k] for k in sorted(histogram)},
        "rating_scale": [data.meta.rating_min, data.meta.rating_max],
        "readers_with_ratings_by_country": dict(per_country.most_common(top)),
        f"readers_with_{min_ratings}_ratings_by_country": dict(active.most_common(top)),
        "time_range": (
            [str(pc.min(timestamps).as_py()), str(pc.max(timestamps).as_py())]
            if len(timestamps)
            else None
        ),
        "import": {
            "rows_in": sum(data.meta.rows_in.values()),
            "imported": sum(data.meta.imported.values()),
            "rejected": sum(data.meta.rejected.values()),
            "rejects_by_reason": data.meta.rejects_by_reason,
            "notes": data.meta.notes,
        },
    }
