"""The deployed task: what a personalized model is asked to do, shared by every stage.

Synthesis writes training prompts with it, training learns from them, evaluation asks each system
the same thing on held-out readers, and ``gravity prompt`` shows it. It holds the prompt a model
sees (``deployed_messages``), the seeded choice of items per reader (``choose_books``), the
per-record sampling seeds (``slot_seed``) and how a completion becomes a usable text
(``clean_text``, ``finished_text``).
"""

from __future__ import annotations

import hashlib
import random
import re

from gravity.items import Item
from gravity.llm.base import Completion
from gravity.llm.engine import Reject
from gravity.profiles.models import UserProfile
from gravity.taskspec import Task, load_task


def deployed_messages(
    profile: UserProfile | None, item: Item, task: Task | None = None
) -> list[dict[str, str]]:
    """The deployed task's prompt (system + user turn) for ``item``; ``profile=None`` leaves the
    reader out. ``task``: default the book task."""
    task = task if task is not None else load_task()
    profile_text = task.profile_text(profile) if profile is not None else ""
    language = task.language(profile)
    return [
        {"role": "system", "content": task.render("system")},
        {
            "role": "user",
            "content": task.render("deployed", item, profile_text=profile_text, language=language),
        },
    ]


def choose_books(user: UserProfile, catalog: list[Item], k: int, seed: int) -> list[Item]:
    """``k`` items for ``user``, a seeded choice that depends only on (seed, user id)."""
    rng = random.Random(f"gravity-books:{seed}:{user.id}")
    return sorted(rng.sample(catalog, min(k, len(catalog))), key=lambda b: b.id)


def slot_seed(seed: int, record_id: str, role: str) -> int:
    """A per-record, per-role sampling seed (identical prompts still get distinct samples)."""
    digest = hashlib.sha256(f"{seed}:{record_id}:{role}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


_LABEL = re.compile(r"^\s*(?:situation|scenario|description)\s*:\s*", re.IGNORECASE)


def clean_text(text: str) -> str:
    """Strip whitespace, a leading label and wrapping quotes."""
    text = _LABEL.sub("", text.strip())
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s|$)")


def finished_text(completion: Completion, on_truncation: str) -> str | Reject:
    """The usable text of a completion: cleaned; a truncated one is trimmed to its last full
    sentence (``on_truncation="trim"``) or rejected (``"reject"``, or nothing left to keep)."""
    text = clean_text(completion.text)
    if not text:
        return Reject("empty output", completion.text, "empty")
    if completion.finish_reason != "length":
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if on_truncation == "trim" and ends:
        return text[: ends[-1]].strip()
    return Reject("output hit the token limit (truncated)", completion.text, "truncated")
