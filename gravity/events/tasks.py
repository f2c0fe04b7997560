"""The two LLM tasks of profile inference, with structured output through the engine.

- ``tag_items``: tags (from the task's vocabulary: book genres, product categories, ...) and
  themes of items that have no categories, from their metadata (``prompts/tag_item.j2``).
  Inputs: item dicts; output: the task's tags model (``tag_model``) or a reject reason per item.
- ``traits_from_reviews``: Schwartz values and Big Five traits of a user from their review
  texts (``prompts/infer_traits.j2``), with evidence quotes that must occur in the reviews and a
  confidence. Inputs: review lists; output: ``TextTraits`` (evidence verified) or a reject reason.

The vocabulary and the wording (the item's noun, what tags and reviews are called, who the
model is told it is) are the task's (task.yaml ``events:``, ``profile.person``); without a task,
the book task's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from gravity.llm.base import ChatRequest, SamplingParams
from gravity.llm.engine import FAST_STOP, STRUCTURED_ADVICE, Engine, Parsed
from gravity.profiles.models import BIG_FIVE_TRAITS, SCHWARTZ_VALUES
from gravity.prompts import render
from gravity.taskspec import Task, load_task

Quote = Annotated[str, Field(min_length=3, max_length=300)]


def system_message(task: Task) -> str:
    """The system message of both steps: who the model is told it is."""
    return (
        f"You are a careful {task.spec.events.analyst}. Answer only with the JSON object asked for."
    )


@lru_cache(maxsize=16)
def _tag_model(tags: tuple[str, ...], name: str) -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (list[Literal[tags]], Field(min_length=1, max_length=3)),  # type: ignore[valid-type]
        "themes": (
            list[Annotated[str, Field(min_length=2, max_length=60)]],
            Field(default_factory=list, max_length=3),
        ),
    }
    model = create_model("ItemTags", __config__=ConfigDict(extra="ignore"), **fields)
    label = name.replace("_", " ").capitalize()
    model.__doc__ = f"{label} and themes of one item, as tagged by the LLM."
    return model  # type: ignore[no-any-return]


def tag_model(task: Task) -> type[BaseModel]:
    """The structured answer of the tagging step: 1-3 of the task's tags (under the task's
    ``tag_name``) and up to 3 themes. One class per vocabulary."""
    return _tag_model(tuple(task.tags()), task.spec.events.tag_name)


def item_tags(task: Task, answer: BaseModel) -> dict[str, list[str]]:
    """A parsed tagging answer as ``{"genres": tags, "themes": themes}`` (the profile's
    interests keep their field names whatever the task calls its tags)."""
    return {"genres": list(getattr(answer, task.spec.events.tag_name)), "themes": answer.themes}


SYSTEM = system_message(load_task())
"""The book task's system message."""
GENRES: tuple[str, ...] = tuple(load_task().tags())
"""The book task's vocabulary (the sampler's genres)."""
ItemTags = tag_model(load_task())
"""The book task's tags model."""


_fields: dict[str, Any] = {v: (float, Field(ge=1, le=6)) for v in SCHWARTZ_VALUES}
_fields |= {t: (float, Field(ge=1, le=5)) for t in BIG_FIVE_TRAITS}
_fields["evidence"] = (list[Quote], Field(min_length=1, max_length=5))
_fields["confidence"] = (float, Field(ge=0, le=1))
TextTraits = create_model(  # a flat object: the easiest schema for a small model to fill
    "TextTraits", __config__=ConfigDict(extra="ignore"), **_fields
)
TextTraits.__doc__ = "A reader's values (1-6), traits (1-5), evidence quotes and confidence."


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.casefold()).strip()


def verified_quotes(quotes: Sequence[str], reviews: Sequence[str]) -> list[str]:
    """The quotes that occur word for word (ignoring case and punctuation) in the reviews."""
    corpus = " | ".join(_norm(r) for r in reviews)
    kept = []
    for quote in quotes:
        norm = _norm(quote)
        if len(norm) >= 3 and norm in corpus and quote not in kept:
            kept.append(quote)
    return kept


def tag_items(
    engine: Engine,
    items: Sequence[dict[str, Any]],
    params: SamplingParams,
    max_attempts: int = 3,
    fast_stop: int | None = FAST_STOP,
    task: Task | None = None,
) -> list[dict[str, list[str]] | str]:
    """Tags per item (``item_tags``), or the reject reason where the model gave no usable
    answer; raises ``StructuredStop`` when the first ``fast_stop`` answers are all invalid."""
    task = task if task is not None else load_task()
    requests = tag_requests(items, task)
    outs = engine.generate_structured(
        requests,
        params,
        tag_model(task),
        max_attempts,
        desc="tag items",
        fast_stop=fast_stop,
        advice=f"{STRUCTURED_ADVICE}, or --no-tag-items to skip the step",
    )
    return [item_tags(task, o.value) if isinstance(o, Parsed) else o.reason for o in outs]


def tag_requests(items: Sequence[dict[str, Any]], task: Task | None = None) -> list[ChatRequest]:
    """The prompt that asks for each item's tags, in the task's words (default: the book
    task)."""
    task = task if task is not None else load_task()
    words = {"noun": task.noun, "tag_name": task.spec.events.tag_name, "tags": task.tags()}
    system = system_message(task)
    return [
        ChatRequest.from_prompt(
            render("tag_item.j2", item=_bounded_item(item), **words), system=system
        )
        for item in items
    ]


def traits_requests(
    reviews: Sequence[Sequence[str]], task: Task | None = None
) -> list[ChatRequest]:
    """The prompt that asks for each user's values and traits from their reviews, in the
    task's words (default: the book task)."""
    task = task if task is not None else load_task()
    words = {"texts": task.spec.events.reviews, "person": task.profile_wording().person}
    system = system_message(task)
    return [
        ChatRequest.from_prompt(render("infer_traits.j2", reviews=list(r), **words), system=system)
        for r in reviews
    ]


def _bounded_item(item: dict[str, Any]) -> dict[str, Any]:
    description = item.get("description") or None
    if description and len(description) > 1200:
        description = description[:1200].rsplit(" ", 1)[0] + " ..."
    return {**item, "description": description}


def traits_from_reviews(
    engine: Engine,
    reviews: Sequence[Sequence[str]],
    params: SamplingParams,
    max_attempts: int = 3,
    fast_stop: int | None = FAST_STOP,
    task: Task | None = None,
) -> list[Any | str]:
    """``TextTraits`` per reader (evidence reduced to verified quotes), or a reject reason.

    An answer whose evidence quotes occur nowhere in the reader's reviews is rejected: a value
    profile must rest on what the reader wrote.
    """
    requests = traits_requests(reviews, task)
    outs = engine.generate_structured(
        requests,
        params,
        TextTraits,
        max_attempts,
        desc="traits from reviews",
        fast_stop=fast_stop,
        advice=f"{STRUCTURED_ADVICE}, or --no-text-inference to skip the step",
    )
    results: list[Any | str] = []
    for texts, out in zip(reviews, outs):
        if not isinstance(out, Parsed):
            results.append(out.reason)
            continue
        quotes = verified_quotes(out.value.evidence, texts)
        if not quotes:
            results.append("no evidence quote occurs in the reviews")
            continue
        results.append(out.value.model_copy(update={"evidence": quotes}))
    return results
