"""Reader intents per item, by the LLM, retrieval-augmented.

For each item the model reads its metadata, up to ``max_reviews`` of its review texts and the
intents already extracted for its nearest items (cosine of sentence embeddings of the items'
metadata), and answers a JSON object ``{"intents": [...]}`` (``prompts/item_intents.j2``).
Items go in rounds (most-rated first): the neighbours an item sees are the items of earlier
rounds, so the prompts (and so the store keys) depend on the item list and ``round_size`` only,
never on the engine's batch size. Every call goes through the engine and its store: a rerun
reads the stored answers back. An item whose answer cannot be used is a reject with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from gravity.llm.base import ChatRequest, SamplingParams
from gravity.llm.engine import FAST_STOP, Engine, Parsed, Reject, parse_structured
from gravity.prompts import render

MIN_ITEMS_FOR_COMMON = 10
SYSTEM = "You are a careful literary analyst. Answer only with the JSON object asked for."
# Lenient per phrase (a blank or overlong one is dropped when cleaned, not the whole answer).
Phrase = Annotated[str, Field(max_length=200)]


def _no_description(schema: dict[str, Any]) -> None:
    # The schema goes into the prompt: a small model copies a description as its answer.
    schema.pop("description", None)


class ItemIntents(BaseModel):
    """The reader intents one item serves, as the LLM phrased them."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_no_description)

    intents: list[Phrase] = Field(min_length=1, max_length=8)


@dataclass
class Extraction:
    """Intent phrases per item (ids in input order) and the items rejected, with their reasons
    as ``kind: reason``."""

    phrases: dict[str, list[str]] = field(default_factory=dict)
    rejects: dict[str, str] = field(default_factory=dict)


def clean_phrase(text: str, title: str | None = None) -> str | None:
    """A phrase as stored: one line, lower case, no quotes or trailing punctuation; None when
    it is no intent: fewer than 2 or more than 12 words, no letters, or the book's title."""
    text = " ".join(str(text).split()).strip(" \"'.,;:!-*").casefold()
    words = text.split()
    if not 2 <= len(words) <= 12 or not re.search(r"[^\W\d_]{2}", text):
        return None
    if title and text == " ".join(title.split()).casefold():
        return None
    return text[:80]


def item_text(item: dict[str, Any], shelves: Sequence[str] = ()) -> str:
    """What an item's embedding is computed from: title, author, the start of its description
    and the ``shelves`` shown for it (none: the text is as it was before shelves were read)."""
    parts = [item.get("title") or "", f"by {item['author']}" if item.get("author") else ""]
    if item.get("description"):
        parts.append(" ".join(item["description"].split())[:300])
    if shelves:
        parts.append("shelves: " + ", ".join(shelves))
    return " ".join(p for p in parts if p) or str(item.get("id", ""))


def _shelf(text: str) -> str:
    """A shelf as shown: one line, at most 60 characters."""
    return " ".join(str(text).split())[:60].strip()


def shown_shelves(items: Sequence[dict[str, Any]], max_shelves: int) -> list[list[str]]:
    """The shelves (an item's ``categories``, in their order) shown for each item: its first
    ``max_shelves``, repeats (ignoring case) dropped, leaving out the ones more than half of
    ``items`` carry when there are at least ``MIN_ITEMS_FOR_COMMON`` items ("to-read",
    "favorites", "non-fiction" on a catalog of memoirs say nothing about one of them)."""
    from collections import Counter

    carried = Counter(
        key
        for item in items
        for key in {_shelf(s).casefold() for s in item.get("categories") or ()}
    )
    common = (
        {key for key, n in carried.items() if 2 * n > len(items)}
        if len(items) >= MIN_ITEMS_FOR_COMMON
        else set()
    )
    shown = []
    for item in items:
        kept: list[str] = []
        seen: set[str] = set()
        for raw in item.get("categories") or ():
            if len(kept) >= max_shelves:
                break
            shelf = _shelf(raw)
            key = shelf.casefold()
            if shelf and key not in common and key not in seen:
                kept.append(shelf)
                seen.add(key)
        shown.append(kept)
    return shown


def _excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + "..."


def _prompt_item(item: dict[str, Any], shelves: Sequence[str] = ()) -> dict[str, Any]:
    desc = item.get("description") or None
    return {
        "title": (item.get("title") or f"item {item['id']}")[:300],
        "author": (item.get("author") or None),
        "year": item.get("year"),
        "publisher": item.get("publisher") or None,
        "description": _excerpt(desc, 800) if desc else None,
        "shelves": list(shelves),
    }


def extract_intents(
    engine: Engine,
    items: Sequence[dict[str, Any]],
    reviews: dict[str, list[str]],
    params: SamplingParams,
    *,
    max_intents: int = 4,
    neighbours: int = 3,
    round_size: int = 32,
    max_reviews: int = 3,
    max_review_chars: int = 300,
    max_attempts: int = 2,
    max_shelves: int = 12,
) -> Extraction:
    """Intent phrases for ``items`` (dicts of the events' items table), most important first.

    ``reviews`` maps item ids to their review texts (the longest are sent); an item's shelves
    (``categories``) are shown as ``shown_shelves`` picks them. Counts add up: every item ends
    in ``phrases`` or in ``rejects``.
    """
    from gravity.embed import embed

    out = Extraction()
    if not items:
        return out
    shelves = shown_shelves(items, max_shelves)
    vectors = embed([item_text(i, s) for i, s in zip(items, shelves)])
    done: list[int] = []  # positions of items with phrases, in order of extraction
    n_rounds = (len(items) + round_size - 1) // round_size
    for r, start in enumerate(range(0, len(items), round_size)):
        batch = list(range(start, min(start + round_size, len(items))))
        contexts = [
            render(
                "item_intents.j2",
                item=_prompt_item(items[pos], shelves[pos]),
                reviews=_longest(reviews.get(items[pos]["id"], []), max_reviews, max_review_chars),
                neighbours=_neighbours(pos, done, vectors, items, out.phrases, neighbours),
                max_intents=max_intents,
            )
            for pos in batch
        ]
        requests = [ChatRequest.from_prompt(text, system=SYSTEM) for text in contexts]
        desc = f"item intents {r + 1}/{n_rounds}" if n_rounds > 1 else "item intents"
        titles = [items[pos].get("title") for pos in batch]
        answers = _ask(engine, requests, params, titles, max_intents, max_attempts, desc)
        for pos, answer in zip(batch, answers):
            item_id = items[pos]["id"]
            if isinstance(answer, Parsed):
                out.phrases[item_id] = answer.value
                done.append(pos)
            else:
                out.rejects[item_id] = f"{answer.kind}: {answer.reason}"
    return out


def _neighbours(
    pos: int,
    done: list[int],
    vectors: Any,
    items: Sequence[dict[str, Any]],
    phrases: dict[str, list[str]],
    k: int,
) -> list[dict[str, Any]]:
    """The ``k`` items already extracted (positions ``done``) nearest to item ``pos``, with their
    intents: the context that keeps one item's phrases consistent with its neighbours'."""
    import numpy as np

    if not done or not k:
        return []
    sims = vectors[done] @ vectors[pos]
    # Stable: equal similarities keep the earlier (more-rated) item first.
    order = np.argsort(-sims, kind="stable")[:k]
    return [
        {"title": _prompt_item(items[done[j]])["title"], "intents": phrases[items[done[j]]["id"]]}
        for j in order
    ]


def _longest(texts: list[str], n: int, max_chars: int) -> list[str]:
    """The ``n`` longest distinct review texts, each cut to ``max_chars``."""
    ranked = sorted(set(texts), key=lambda t: (-len(t), t))
    return [_excerpt(t, max_chars) for t in ranked[:n]]


def _ask(
    engine: Engine,
    requests: list[ChatRequest],
    params: SamplingParams,
    titles: list[str | None],
    max_intents: int,
    max_attempts: int,
    desc: str,
) -> list[Parsed[list[str]] | Reject]:
    """Cleaned phrases per request; an answer with no usable phrase is retried like one that
    is not JSON (same schema-carrying requests as ``generate_structured``, so same store keys)."""
    schema = ItemIntents.model_json_schema()
    params = params.model_copy(update={"json_schema": schema})
    prepared = [engine.with_json_instruction(r, schema) for r in requests]

    def parse(completion: Any, i: int) -> list[str] | Reject:
        parsed = parse_structured(completion.text, ItemIntents)
        if isinstance(parsed, Reject):
            return parsed
        kept: list[str] = []
        for phrase in parsed.intents:
            clean = clean_phrase(phrase, titles[i])
            if clean and clean not in kept:
                kept.append(clean)
        if not kept:
            return Reject("no readable intent phrase in the answer", completion.text, "no_phrase")
        return kept[:max_intents]

    return engine.generate_parsed(prepared, params, parse, max_attempts, desc, FAST_STOP)
