"""The persona judge: an LLM role-plays a held-out reader and compares anonymous descriptions.

Two protocols, both cancelling the judge's position preference:

- ``pairwise`` (default): every pair of systems is judged in both orders and the judge's
  probability that a description is the better one is averaged over the two orders (balanced
  position calibration); with one-hot verdicts a verdict that flips with the order is a tie (as in
  FastChat's MT-bench).
- ``ranking``: the judge picks the best of all candidates, once per rotation, so every candidate
  holds every position once; a case missing any rotation is excluded and counted.

Identical descriptions (whitespace aside) are never judged against each other: they tie. The
judge answers through ``gravity.judging.LabelJudge`` (label likelihoods, or schema-constrained
JSON), so no answer is read from free text.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gravity.items import Item
from gravity.judging import Choice, LabelJudge, mean_over_orders
from gravity.llm.base import ChatRequest
from gravity.llm.engine import Reject
from gravity.taskspec import Task, load_task

INTEREST_LABELS = ["1", "2", "3", "4", "5"]
EMPTY = "(no description)"


def permutation(systems: list[str], case_id: str, r: int, seed: int) -> list[str]:
    """Order of the systems for rotation ``r`` of a case (seeded shuffle, rotated ``r``)."""
    base = sorted(systems)
    random.Random(f"gravity-judge:{seed}:{case_id}").shuffle(base)
    k = r % len(base)
    return base[k:] + base[:k]


def labels_for(n: int) -> list[str]:
    """A, B, C, ..."""
    if n > len(string.ascii_uppercase):
        raise ValueError("at most 26 systems can be judged together")
    return list(string.ascii_uppercase[:n])


def normalised(text: str) -> str:
    """The text with whitespace runs collapsed: what "identical" compares."""
    return " ".join(text.split())


def candidate_groups(texts: dict[str, str]) -> list[list[str]]:
    """Systems grouped by identical description, each group sorted, groups by first member."""
    groups: dict[str, list[str]] = {}
    for system in sorted(texts):
        groups.setdefault(normalised(texts[system]), []).append(system)
    return sorted(groups.values())


@dataclass(frozen=True)
class CaseView:
    """What the judge sees of a case: the reader's profile text and the book."""

    case_id: str
    reader_id: str
    country: str
    profile_text: str
    book: Item
    task: Task | None = None  # None: the default (book) task

    def render(self, role: str, **variables: Any) -> str:
        """The case's prompt of ``role`` (judge_pair, judge_persona, judge_interest)."""
        task = self.task if self.task is not None else load_task()
        return task.render(role, self.book, profile_text=self.profile_text, **variables)


@dataclass
class JudgeResult:
    """Per case: pairwise scores ``(S, B) -> S's score`` and interest; plus counts and rejects."""

    pairs: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    interest: dict[str, dict[str, float]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    rejects: list[dict[str, Any]] = field(default_factory=list)


def _reject_row(case_id: str, what: str, reject: Reject) -> dict[str, Any]:
    return {"case_id": case_id, "call": what, "reason": reject.kind, "detail": reject.reason}


def _pair_requests(
    views: Sequence[CaseView], texts: Sequence[dict[str, str]], answer: str, result: JudgeResult
) -> tuple[list[ChatRequest], list[tuple[int, str, str]], int]:
    """Both orders of every distinct pair; identical pairs are tied in ``result`` directly.
    Returns (requests, slots as (case index, shown first, shown second), identical pairs)."""
    requests: list[ChatRequest] = []
    slots: list[tuple[int, str, str]] = []
    identical = 0
    for k, (view, case_texts) in enumerate(zip(views, texts)):
        systems = sorted(case_texts)
        result.pairs[view.case_id] = {}
        for i, s in enumerate(systems):
            for b in systems[i + 1 :]:
                if normalised(case_texts[s]) == normalised(case_texts[b]):
                    result.pairs[view.case_id][(s, b)] = 0.5
                    identical += 1
                    continue
                for first, second in ((s, b), (b, s)):
                    prompt = view.render(
                        "judge_pair",
                        first=case_texts[first] or EMPTY,
                        second=case_texts[second] or EMPTY,
                        answer=answer,
                    )
                    requests.append(ChatRequest.from_prompt(prompt))
                    slots.append((k, first, second))
    return requests, slots, identical


def judge_pairwise(
    views: Sequence[CaseView],
    texts: Sequence[dict[str, str]],
    judge: LabelJudge,
    seed: int,
) -> JudgeResult:
    """Every pair of every case in both orders. A pair's value for S is the mean, over the two
    orders, of the judge's probability that S's description is the better one: position bias
    cancels (a judge that gives the first position p whatever it shows scores every pair 0.5).
    With one-hot verdicts (constrained judging) this is the FastChat rule: 1 or 0 when both
    orders agree, 0.5 when the verdict flips. A case with an unusable verdict is excluded (and
    counted). Position consistency is the share of pairs whose most probable answer names the
    same system (or none) in both orders."""
    result = JudgeResult()
    requests, slots, identical = _pair_requests(views, texts, judge.answer, result)
    seeds = [_seed(seed, views[k].case_id, f"{a}>{b}") for k, a, b in slots]
    choices = judge.choose(requests, ["A", "B"], seeds, desc="judge pairs")
    calls: dict[tuple[int, str, str], Choice | Reject] = {}
    for (k, first, second), choice in zip(slots, choices):
        calls[(k, first, second)] = choice
        if isinstance(choice, Reject):
            result.rejects.append(_reject_row(views[k].case_id, f"{first} vs {second}", choice))
    consistent = judged = first_wins = decided = 0
    first_mass = 0.0
    failed: set[int] = set()
    for (k, s, b), c1 in calls.items():
        if s > b:
            continue
        c2 = calls[(k, b, s)]  # b shown first
        if isinstance(c1, Reject) or isinstance(c2, Reject):
            failed.add(k)
            continue
        judged += 1
        # The system each order's most probable answer names (None: no preference).
        v1 = {"A": s, "B": b}.get(c1.best or "")
        v2 = {"A": b, "B": s}.get(c2.best or "")
        decided += (v1 is not None) + (v2 is not None)
        first_wins += (v1 == s) + (v2 == b)
        first_mass += c1.probs["A"] + c2.probs["A"]
        consistent += v1 == v2
        result.pairs[views[k].case_id][(s, b)] = mean_over_orders(c1, c2)
    for k in sorted(failed):
        del result.pairs[views[k].case_id]
    result.stats = {
        "protocol": "pairwise",
        "calls": len(requests),
        "parsed": sum(not isinstance(c, Reject) for c in choices),
        "pairs_judged": judged,
        "pairs_consistent": consistent,
        "position_consistency": consistent / judged if judged else None,
        "first_position_rate": first_wins / decided if decided else None,
        "first_position_mass": first_mass / (2 * judged) if judged else None,
        "identical_pairs": identical,
        "excluded_cases": len(failed),
    }
    return result


def _ranking_requests(
    views: Sequence[CaseView], texts: Sequence[dict[str, str]], answer: str, seed: int
) -> tuple[list[ChatRequest], list[tuple[int, list[str]]], list[list[list[str]]]]:
    """One request per rotation of each case's distinct candidates. Returns (requests, slots
    as (case index, representatives in shown order), each case's identical-text groups)."""
    requests: list[ChatRequest] = []
    slots: list[tuple[int, list[str]]] = []
    plans: list[list[list[str]]] = []
    for k, (view, case_texts) in enumerate(zip(views, texts)):
        groups = candidate_groups(case_texts)
        plans.append(groups)
        reps = [g[0] for g in groups]
        for r in range(len(reps) if len(reps) > 1 else 0):
            order = permutation(reps, view.case_id, r, seed)
            candidates = [
                {"label": label, "text": case_texts[s] or EMPTY}
                for label, s in zip(labels_for(len(order)), order)
            ]
            prompt = view.render("judge_persona", candidates=candidates, answer=answer)
            requests.append(ChatRequest.from_prompt(prompt))
            slots.append((k, order))
    return requests, slots, plans


def _score_pairs(groups: list[list[str]], probs: dict[str, list[float]]) -> dict:
    """Pairwise results from each group's mean probability of being picked."""
    # Rounded: equal probabilities summed in another order must still tie.
    score = {g[0]: round(sum(probs[g[0]]) / len(probs[g[0]]), 9) for g in groups if g[0] in probs}
    expanded = {s: score.get(g[0], 0.0) for g in groups for s in g}
    systems = sorted(expanded)
    return {
        (s, b): 1.0 if expanded[s] > expanded[b] else 0.5 if expanded[s] == expanded[b] else 0.0
        for i, s in enumerate(systems)
        for b in systems[i + 1 :]
    }


def judge_ranking(
    views: Sequence[CaseView],
    texts: Sequence[dict[str, str]],
    judge: LabelJudge,
    seed: int,
) -> JudgeResult:
    """The best of all distinct candidates, once per rotation. A system's score in a case is
    the judge's mean probability for its description over the rotations; systems are compared
    by that score. Cases missing a rotation are excluded and counted."""
    result = JudgeResult()
    requests, slots, plans = _ranking_requests(views, texts, judge.answer, seed)
    choices: list[Choice | Reject | None] = [None] * len(requests)
    for n in sorted({len(order) for _, order in slots}):  # one label set per candidate count
        idx = [i for i, (_, order) in enumerate(slots) if len(order) == n]
        seeds = [_seed(seed, views[slots[i][0]].case_id, ">".join(slots[i][1])) for i in idx]
        for i, c in zip(idx, judge.choose([requests[i] for i in idx], labels_for(n), seeds)):
            choices[i] = c
    probs: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    tops: dict[int, set[str | None]] = defaultdict(set)
    failed: set[int] = set()
    for (k, order), choice in zip(slots, choices):
        if not isinstance(choice, Choice):
            failed.add(k)
            if isinstance(choice, Reject):
                result.rejects.append(_reject_row(views[k].case_id, "ranking", choice))
            continue
        by_label = dict(zip(labels_for(len(order)), order))
        for label, p in choice.probs.items():
            probs[k][by_label[label]].append(p)
        tops[k].add(by_label.get(choice.best or ""))
    for k, (view, groups) in enumerate(zip(views, plans)):
        if k not in failed:
            result.pairs[view.case_id] = _score_pairs(groups, probs[k])
    multi = [k for k in tops if k not in failed]
    consistent = sum(1 for k in multi if len(tops[k]) == 1)
    result.stats = {
        "protocol": "ranking",
        "calls": len(requests),
        "parsed": sum(isinstance(c, Choice) for c in choices),
        "cases_judged": len(multi),
        "cases_consistent": consistent,
        "position_consistency": consistent / len(multi) if multi else None,
        "identical_pairs": sum(len(g) * (len(g) - 1) // 2 for groups in plans for g in groups),
        "excluded_cases": len(failed),
    }
    return result


def judge_interest(
    views: Sequence[CaseView],
    texts: Sequence[dict[str, str]],
    judge: LabelJudge,
    seed: int,
) -> tuple[dict[str, dict[str, float]], dict[str, Any], list[dict[str, Any]]]:
    """case id -> system -> 1-5 interest: the expected rating under the judge's probabilities
    over 1..5 (or the generated rating). Identical descriptions are rated once."""
    requests, slots = [], []
    for view, case_texts in zip(views, texts):
        for group in candidate_groups(case_texts):
            text = case_texts[group[0]]
            if not text:
                continue
            requests.append(
                ChatRequest.from_prompt(
                    view.render("judge_interest", text=text, answer=judge.answer)
                )
            )
            slots.append((view.case_id, group))
    seeds = [_seed(seed, case_id, f"interest:{g[0]}") for case_id, g in slots]
    choices = judge.choose(requests, INTEREST_LABELS, seeds, desc="judge interest")
    interest: dict[str, dict[str, float]] = {}
    rejects = []
    for (case_id, group), choice in zip(slots, choices):
        if isinstance(choice, Reject):
            rejects.append(_reject_row(case_id, "interest", choice))
            continue
        value = sum(int(k) * p for k, p in choice.probs.items())
        for system in group:
            interest.setdefault(case_id, {})[system] = value
    stats = {"calls": len(requests), "parsed": len(requests) - len(rejects)}
    return interest, stats, rejects


def _seed(seed: int, case_id: str, role: str) -> int:
    """A per-call seed (used only by generating backends; likelihood judging is deterministic)."""
    digest = hashlib.sha256(f"{seed}:{case_id}:judge:{role}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
