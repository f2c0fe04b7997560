"""The persona judge: an LLM role-plays the reader and ranks shuffled, anonymous descriptions.

Position bias is cancelled by rotating the candidates: permutation ``r`` of a case is a seeded
shuffle rotated by ``r`` places, so with as many permutations as systems every system holds
every position once.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from typing import Any

from gravity.books import Book
from gravity.llm.base import ChatRequest, Completion
from gravity.llm.engine import Reject, extract_json
from gravity.prompts import render


@dataclass(frozen=True)
class Verdict:
    """A parsed judgment in label space."""

    ranking: tuple[str, ...]
    interest: dict[str, int]


def judge_schema(labels: list[str]) -> dict[str, Any]:
    """JSON schema of the answer for these labels: a full ranking and a 1-5 rating per label
    (constraining backends then cannot produce an incomplete ranking)."""
    return {
        "type": "object",
        "properties": {
            "ranking": {
                "type": "array",
                "items": {"enum": labels},
                "minItems": len(labels),
                "maxItems": len(labels),
            },
            "interest": {
                "type": "object",
                "properties": {
                    label: {"type": "integer", "minimum": 1, "maximum": 5} for label in labels
                },
                "required": labels,
            },
        },
        "required": ["ranking", "interest"],
    }


def permutation(systems: list[str], case_id: str, r: int, seed: int) -> list[str]:
    """Order of the systems for permutation ``r`` of a case (seeded shuffle, rotated ``r``)."""
    base = sorted(systems)
    random.Random(f"gravity-judge:{seed}:{case_id}").shuffle(base)
    k = r % len(base)
    return base[k:] + base[:k]


def labels_for(n: int) -> list[str]:
    """A, B, C, ..."""
    if n > len(string.ascii_uppercase):
        raise ValueError("at most 26 systems can be judged together")
    return list(string.ascii_uppercase[:n])


def build_request(profile_text: str, book: Book, texts: list[str]) -> ChatRequest:
    """The judge prompt for candidates ``texts`` labelled A, B, ... in order."""
    labels = labels_for(len(texts))
    candidates = [{"label": label, "text": text} for label, text in zip(labels, texts)]
    return ChatRequest.from_prompt(
        render(
            "judge_persona.j2",
            profile_text=profile_text,
            book=book,
            candidates=candidates,
            labels=labels,
        )
    )


def parse_verdict(completion: Completion, labels: list[str]) -> Verdict | Reject:
    """The judge's ranking (and ratings) in label space; never raises.

    JSON with a complete ranking is preferred (JSON with a bad ranking is rejected); output with
    no JSON may instead name every label once in order (e.g. "B > A > C"), taken without ratings.
    """
    text = completion.text
    want = set(labels)
    try:
        data: Any = extract_json(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("ranking"), list):
        ranking = [str(x).strip().strip("[]").upper() for x in data["ranking"]]
        if len(ranking) == len(labels) and set(ranking) == want:
            interest = {}
            raw = data.get("interest")
            if isinstance(raw, dict):
                for label, value in raw.items():
                    label = str(label).strip("[] ").upper()
                    if label in want and isinstance(value, (int, float)) and 1 <= value <= 5:
                        interest[label] = round(value)
            return Verdict(tuple(ranking), interest)
        return Reject(f"ranking {ranking} is not an order of {labels}", text, "judge_unparsable")
    sequence = []
    for match in re.finditer(r"\b([A-Z])\b", text):
        if match.group(1) in want and match.group(1) not in sequence:
            sequence.append(match.group(1))
    if set(sequence) == want:
        return Verdict(tuple(sequence), {})
    return Reject(
        f"judge output names {len(sequence)} of {len(labels)} labels", text, "judge_unparsable"
    )
