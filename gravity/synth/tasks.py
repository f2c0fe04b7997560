"""Generation tasks of the synthesis stage, each with ``build_messages(row)`` and
``parse(completion, row) -> value | Reject``. Parsing never raises.

- ``ScenarioTask``: input (reader, book, facet); output column ``scenario`` (text).
- ``DescriptionTask``: input (book, and for grounded descriptions the facet text and scenario);
  output a description (text) that passed the length and language filters.
- ``QualityJudgeTask``: input (book, description A, description B); a prompt asking which is
  better, answered through ``gravity.judging.LabelJudge`` (label likelihoods or constrained JSON,
  never free text), in both orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gravity.items import Item
from gravity.judging import Choice, mean_over_orders
from gravity.llm.base import ChatRequest, Completion
from gravity.llm.engine import Reject
from gravity.synth.config import FilterConfig
from gravity.task import finished_text
from gravity.taskspec import Task, load_task


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text`` (py3langid, offline)."""
    import py3langid

    return py3langid.classify(text)[0]


@dataclass(frozen=True)
class ScenarioRow:
    book: Item
    facet: str
    facet_text: str


class ScenarioTask:
    """A short situation in which one facet of the reader shapes what they want to hear."""

    def __init__(self, on_truncation: str = "trim", task: Task | None = None) -> None:
        self.on_truncation = on_truncation
        self.task = task if task is not None else load_task()

    def build_messages(self, row: ScenarioRow) -> ChatRequest:
        prompt = self.task.render(
            "scenario",
            row.book,
            facet=row.facet,
            facet_text=row.facet_text,
            guidance=self.task.guidance(row.facet),
        )
        return ChatRequest.from_prompt(prompt)

    def parse(self, completion: Completion, row: ScenarioRow) -> str | Reject:
        text = finished_text(completion, self.on_truncation)
        if isinstance(text, Reject):
            return text
        text = " ".join(text.split())
        if len(text.split()) < 5:
            return Reject("scenario shorter than 5 words", completion.text, "too_short")
        return text


@dataclass(frozen=True)
class DescriptionRow:
    book: Item
    facet: str | None = None  # None: a generic description (no reader)
    facet_text: str | None = None
    scenario: str | None = None
    language: str | None = None  # the reader's, where the task asks for it


class DescriptionTask:
    """An output of the task (a description, a pitch): grounded in a reader's facet (the
    ``chosen`` template) or generic (the ``generic`` template)."""

    def __init__(self, filters: FilterConfig, task: Task | None = None) -> None:
        self.filters = filters
        self.task = task if task is not None else load_task()

    @staticmethod
    def role_for(row: DescriptionRow) -> str:
        return "generic" if row.facet is None else "chosen"

    def build_messages(self, row: DescriptionRow) -> ChatRequest:
        variables: dict[str, Any] = {
            "min_words": self.filters.min_words,
            "max_words": self.filters.max_words,
            "language": row.language,
        }
        if row.facet is not None:
            variables.update(
                facet=row.facet,
                facet_text=row.facet_text,
                scenario=row.scenario,
                guidance=self.task.guidance(row.facet),
            )
        prompt = self.task.render(self.role_for(row), row.book, **variables)
        return ChatRequest.from_prompt(prompt)

    def parse(self, completion: Completion, row: DescriptionRow) -> str | Reject:
        text = finished_text(completion, self.filters.on_truncation)
        if isinstance(text, Reject):
            return text
        words = len(text.split())
        if words < self.filters.min_words:
            return Reject(f"{words} words < {self.filters.min_words}", text, "too_short")
        if words > self.filters.max_words:
            return Reject(f"{words} words > {self.filters.max_words}", text, "too_long")
        if self.filters.language:
            found = detect_language(text)
            if found != self.filters.language:
                return Reject(
                    f"language '{found}', expected '{self.filters.language}'",
                    text,
                    "wrong_language",
                )
        return text


@dataclass(frozen=True)
class JudgeRow:
    book: Item
    a: str
    b: str


class QualityJudgeTask:
    """The naive mode's generic judgment: which of two descriptions is better (no reader).

    Each pair is judged in both orders and the judge's probability that a description is the
    better one is averaged over the two (``mean_over_orders``), so the naive baseline's labels
    are not the judge's position preference: a judge that only follows position, or a one-hot
    verdict that flips with the order, gives 0.5, and the pair is dropped as a tie (counted).
    """

    labels = ("A", "B")

    def __init__(self, task: Task | None = None) -> None:
        self.task = task if task is not None else load_task()

    def build_messages(self, row: JudgeRow, answer: str = "letter") -> ChatRequest:
        """The prompt with ``row.a`` shown as A and ``row.b`` as B."""
        prompt = self.task.render("judge_quality", row.book, a=row.a, b=row.b, answer=answer)
        return ChatRequest.from_prompt(prompt)

    @staticmethod
    def verdict(first: Choice, swapped: Choice) -> str | None:
        """ "A" (row.a better) or "B" from the judge's answers in the shown order (``first``)
        and in the swapped order; None when, averaged over both orders, neither leads."""
        p = mean_over_orders(first, swapped)
        return "A" if p > 0.5 else "B" if p < 0.5 else None

    @staticmethod
    def position_consistent(first: Choice, swapped: Choice) -> bool:
        """Whether both orders' most probable answers name the same description."""
        return first.best is not None and first.best == {"A": "B", "B": "A"}.get(swapped.best or "")
