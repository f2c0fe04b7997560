"""Choosing one of a few labels with an LLM, in a way that always yields a usable answer.

Shared by every stage that asks a model to judge (the naive baseline's quality labels, the
persona judge). Two methods, picked per backend:

- ``likelihood``: the backend reads the probability of each label as the assistant's answer after
  the prompt (one forward pass; nothing is generated or parsed). Used wherever the backend can
  score (``transformers``).
- ``constrained``: the backend generates JSON constrained to a schema (``{"choice": <label>}``;
  llama.cpp grammar, OpenAI-compatible ``json_schema``), parsed strictly: anything that is not
  exactly one schema-valid object is a reject, never a guess from the text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gravity.errors import GravityError
from gravity.llm.base import ChatRequest, Completion, SamplingParams
from gravity.llm.engine import FAST_STOP, STRUCTURED_ADVICE, Engine, Parsed, Reject

Method = Literal["auto", "likelihood", "constrained"]


def choice_schema(labels: Sequence[str]) -> dict[str, Any]:
    """JSON schema of a constrained answer: ``{"choice": <one of labels>}``."""
    return {
        "type": "object",
        "properties": {"choice": {"type": "string", "enum": list(labels)}},
        "required": ["choice"],
        "additionalProperties": False,
    }


def strict_json_object(text: str) -> dict[str, Any] | Reject:
    """``text`` as one JSON object and nothing else (whitespace aside); never raises."""
    try:
        data = json.loads(text.strip())
    except (json.JSONDecodeError, RecursionError):
        return Reject("answer is not one JSON object", text, "judge_unparsable")
    if not isinstance(data, dict):
        return Reject("answer is JSON but not an object", text, "judge_unparsable")
    return data


def parse_choice(text: str, labels: Sequence[str]) -> str | Reject:
    """The label of a ``{"choice": label}`` answer; exact labels only, no other keys."""
    data = strict_json_object(text)
    if isinstance(data, Reject):
        return data
    if set(data) != {"choice"}:
        return Reject(f"keys {sorted(data)} are not ['choice']", text, "judge_unparsable")
    choice = data["choice"]
    if not isinstance(choice, str) or choice not in labels:
        return Reject(f"choice {choice!r} is not one of {list(labels)}", text, "judge_unparsable")
    return choice


def normalise(logprobs: dict[str, float]) -> dict[str, float]:
    """Label log-probabilities -> probabilities over the labels only (they sum to 1)."""
    top = max(logprobs.values())
    weights = {k: math.exp(v - top) for k, v in logprobs.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def _finite_choice(logprobs: dict[str, float]) -> Choice | Reject:
    """The label probabilities, or a Reject when the backend's scores give none (NaN, +inf, or
    every label impossible): such a verdict is unusable, never a tie or a NaN downstream."""
    finite = [v for v in logprobs.values() if not math.isnan(v) and v != math.inf]
    if len(finite) != len(logprobs) or max(finite) == -math.inf:
        return Reject(f"label log-probabilities {logprobs} are not usable", "", "judge_nonfinite")
    return Choice(normalise(logprobs))


@dataclass(frozen=True)
class Choice:
    """A judge's answer over ``labels``: a probability per label (one-hot when generated)."""

    probs: dict[str, float]

    @property
    def best(self) -> str | None:
        """The most probable label, or None when the top probability is shared."""
        top = max(self.probs.values())
        leaders = [k for k, v in self.probs.items() if v == top]
        return leaders[0] if len(leaders) == 1 else None

    def ranking(self) -> list[str]:
        """Labels from most to least probable (ties in label order)."""
        return sorted(self.probs, key=lambda k: -self.probs[k])


def mean_over_orders(first: Choice, swapped: Choice) -> float:
    """The probability that the text shown as A in ``first`` is the better one, averaged over
    both orders (``swapped`` shows it as B). A judge that gives the first position the same
    probability whatever it shows yields exactly 0.5; with one-hot verdicts this is 1 or 0 when
    both orders agree and 0.5 when the verdict flips (the FastChat rule). Rounded to 12 digits:
    a pure position preference p gives (p + 1 - p) / 2, which floats may put a hair off 0.5,
    and no consumer should read that as a lean."""
    return round((first.probs["A"] + swapped.probs["B"]) / 2, 12)


class LabelJudge:
    """Asks an engine's backend to pick one of ``labels`` for each request."""

    def __init__(self, engine: Engine, method: Method = "auto", max_new_tokens: int = 24) -> None:
        can_score = engine.backend.can_score
        if method == "likelihood" and not can_score:
            raise GravityError(
                f"judge method 'likelihood' needs a backend that reads label probabilities; "
                f"'{engine.backend.name}' cannot: use method 'constrained' (or 'auto')"
            )
        self.engine = engine
        self.method: Literal["likelihood", "constrained"] = (
            "likelihood"
            if method == "likelihood" or (method == "auto" and can_score)
            else "constrained"
        )
        self.max_new_tokens = max_new_tokens

    @property
    def answer(self) -> str:
        """How the prompt asks for the answer: ``letter`` (likelihood) or ``json``."""
        return "letter" if self.method == "likelihood" else "json"

    def choose(
        self,
        requests: Sequence[ChatRequest],
        labels: Sequence[str],
        seeds: Sequence[int],
        desc: str = "judge",
    ) -> list[Choice | Reject]:
        """One ``Choice`` (or a ``Reject`` with its reason) per request, in order."""
        if not requests:
            return []
        if self.method == "likelihood":
            scores = self.engine.score_labels(requests, labels, desc=desc)
            return [_finite_choice(s) for s in scores]
        schema = choice_schema(labels)
        prepared = [self.engine.with_json_instruction(r, schema) for r in requests]
        params = [
            SamplingParams(
                max_new_tokens=self.max_new_tokens, temperature=0.0, json_schema=schema, seed=s
            )
            for s in seeds
        ]

        def parse(out: Completion, _i: int) -> str | Reject:
            return parse_choice(out.text, labels)

        results = self.engine.generate_parsed(
            prepared,
            params,
            parse,
            max_attempts=1,
            desc=desc,
            fast_stop=FAST_STOP,
            advice=f"{STRUCTURED_ADVICE}, or judge_method likelihood on a backend that scores",
        )
        return [
            Choice({k: float(k == r.value) for k in labels}) if isinstance(r, Parsed) else r
            for r in results
        ]
