"""Real readers: event histories (personal and relational events), their import from public
formats, statistics, and profile inference from them."""

from gravity.events.models import Event, Item, Meta, User
from gravity.events.store import EventsData, read_events_dir

__all__ = ["Event", "EventsData", "Item", "Meta", "User", "read_events_dir"]
