"""Questionnaire scoring against hand-computed cases, reverse-keyed items included."""

from __future__ import annotations

import pytest

from gravity.errors import GravityError
from gravity.profiles import score_bfi10, score_pvq21
from gravity.profiles.builders import AnswersFile, profile_from_answers

BFI = [2, 4, 5, 1, 2, 4, 3, 2, 3, 5]
PVQ = [6, 1, 5, 2, 4, 3, 2, 5, 1, 4, 6, 6, 2, 4, 3, 3, 1, 5, 6, 2, 4]


def test_bfi10_hand_computed():
    b = score_bfi10(BFI)
    # E: (6-2 [1R], 4 [6]) -> 4.0; A: (4 [2], 6-3 [7R]) -> 3.5; C: (6-5 [3R], 2 [8]) -> 1.5
    # N: (6-1 [4R], 3 [9]) -> 4.0; O: (6-2 [5R], 5 [10]) -> 4.5
    assert b.model_dump() == {
        "extraversion": 4.0,
        "agreeableness": 3.5,
        "conscientiousness": 1.5,
        "neuroticism": 4.0,
        "openness": 4.5,
    }


def test_bfi10_accepts_mapping_by_item_number():
    mapping = {str(i + 1): v for i, v in reversed(list(enumerate(BFI)))}
    assert score_bfi10(mapping) == score_bfi10(BFI)


def test_pvq21_hand_computed():
    s = score_pvq21(PVQ)
    assert s.self_direction == 6.0 and s.power == 1.0
    assert s.universalism == pytest.approx(16 / 3, abs=1e-4)
    assert s.conformity == 2.5 and s.tradition == 1.5 and s.benevolence == 5.5
    assert s.mean_rating == pytest.approx(75 / 21, abs=1e-4)
    assert s.centred["self_direction"] == pytest.approx(6 - 75 / 21, abs=1e-3)


def test_pvq21_reversed_coding():
    s = score_pvq21([7 - v for v in PVQ], pvq_reversed=True)
    assert s == score_pvq21(PVQ)


@pytest.mark.parametrize(
    "answers, message",
    [
        (BFI[:9], "expected 10 answers"),
        ([*BFI, 3], "got 11"),
        ({**{i: 3 for i in range(1, 10)}, 12: 3}, "missing items [10], unknown items [12]"),
        ([6, *BFI[1:]], "item 1: answer 6 is outside 1-5"),
        ([0, *BFI[1:]], "item 1: answer 0 is outside 1-5"),
        (["a", *BFI[1:]], "is not a number"),
    ],
)
def test_bfi10_bad_answers(answers, message):
    with pytest.raises(GravityError, match="bfi10") as info:
        score_bfi10(answers)
    assert message in str(info.value)


def test_pvq21_bad_answers():
    with pytest.raises(GravityError, match="expected 21 answers"):
        score_pvq21(PVQ[:20])
    with pytest.raises(GravityError, match="item 21: answer 7 is outside 1-6"):
        score_pvq21([*PVQ[:20], 7])


def test_profile_from_answers_fills_culture():
    p = profile_from_answers(AnswersFile(bfi10=BFI, pvq21=PVQ, id="q1"), country="JP")
    assert p.source == "questionnaire" and p.country == "JP"
    assert p.big_five.openness == 4.5 and p.schwartz.power == 1.0
    assert p.hofstede.mas == 95 and p.wvs is not None
    with pytest.raises(GravityError, match="country"):
        profile_from_answers(AnswersFile(bfi10=BFI))
    with pytest.raises(GravityError, match="at least one"):
        profile_from_answers(AnswersFile(), country="JP")
