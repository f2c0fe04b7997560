"""Score questionnaire answers given by item number into Big Five and Schwartz facets.

Only the scoring keys are encoded here (which item maps to which trait or value, and which items
are reverse-keyed): these are facts of the instruments. The item wording is not shipped; users
administer the instrument themselves and pass answers by item number (1-based).

- ``bfi10``: a 10-item Big Five inventory (Rammstedt & John, 2007), answers 1-5
  (1 = disagree strongly, 5 = agree strongly).
- ``pvq21``: the 21-item Portrait Values Questionnaire as used in the European Social Survey,
  answers 1-6 with 6 = "very much like me" (set ``pvq_reversed=True`` for the ESS coding where
  1 = "very much like me").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gravity.errors import GravityError
from gravity.profiles.models import BigFive, Schwartz


@dataclass(frozen=True)
class Instrument:
    """A questionnaire's scoring key."""

    name: str
    n_items: int
    scale: tuple[int, int]
    key: Mapping[str, tuple[int, ...]]  # facet field -> item numbers
    reversed_items: frozenset[int] = frozenset()


BFI10 = Instrument(
    name="bfi10",
    n_items=10,
    scale=(1, 5),
    key={
        "extraversion": (1, 6),
        "agreeableness": (2, 7),
        "conscientiousness": (3, 8),
        "neuroticism": (4, 9),
        "openness": (5, 10),
    },
    reversed_items=frozenset({1, 3, 4, 5, 7}),
)

PVQ21 = Instrument(
    name="pvq21",
    n_items=21,
    scale=(1, 6),
    key={
        "self_direction": (1, 11),
        "power": (2, 17),
        "universalism": (3, 8, 19),
        "achievement": (4, 13),
        "security": (5, 14),
        "stimulation": (6, 15),
        "conformity": (7, 16),
        "tradition": (9, 20),
        "hedonism": (10, 21),
        "benevolence": (12, 18),
    },
)

INSTRUMENTS: dict[str, Instrument] = {i.name: i for i in (BFI10, PVQ21)}


class AnswerError(GravityError):
    """Answers that do not fit the instrument (count, item numbers or range)."""


def _check(instrument: Instrument, answers: Mapping[int, float] | list[float]) -> dict[int, float]:
    if isinstance(answers, list):
        answers = {i + 1: v for i, v in enumerate(answers)}
    items: dict[int, float] = {}
    for raw_item, value in answers.items():
        try:
            item = int(raw_item)
        except (TypeError, ValueError):
            raise AnswerError(
                f"{instrument.name}: item '{raw_item}' is not an item number"
            ) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AnswerError(f"{instrument.name}: item {item}: answer {value!r} is not a number")
        items[item] = float(value)
    expected = set(range(1, instrument.n_items + 1))
    if set(items) != expected:
        missing = sorted(expected - set(items))
        extra = sorted(set(items) - expected)
        parts = [f"expected {instrument.n_items} answers (items 1-{instrument.n_items})"]
        parts.append(f"got {len(items)}")
        if missing:
            parts.append(f"missing items {missing}")
        if extra:
            parts.append(f"unknown items {extra}")
        raise AnswerError(f"{instrument.name}: " + ", ".join(parts))
    low, high = instrument.scale
    for item, value in sorted(items.items()):
        if not low <= value <= high:
            raise AnswerError(
                f"{instrument.name}: item {item}: answer {value:g} is outside {low}-{high}"
            )
    return items


def _score(instrument: Instrument, items: dict[int, float]) -> dict[str, float]:
    low, high = instrument.scale
    keyed = {i: (low + high - v if i in instrument.reversed_items else v) for i, v in items.items()}
    return {
        facet: round(sum(keyed[i] for i in members) / len(members), 4)
        for facet, members in instrument.key.items()
    }


def score_bfi10(answers: Mapping[int, float] | list[float]) -> BigFive:
    """Big Five trait scores (1-5) from the 10 BFI-10 answers."""
    return BigFive(**_score(BFI10, _check(BFI10, answers)))


def score_pvq21(answers: Mapping[int, float] | list[float], pvq_reversed: bool = False) -> Schwartz:
    """Schwartz value scores from the 21 PVQ answers, with the mean rating kept for centring."""
    items = _check(PVQ21, answers)
    if pvq_reversed:
        items = {i: 7 - v for i, v in items.items()}
    mean_rating = round(sum(items.values()) / len(items), 4)
    return Schwartz(**_score(PVQ21, items), mean_rating=mean_rating)
