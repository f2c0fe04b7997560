"""Controls of an evaluation: what its metrics can see, shown on the same readers and items.

- **Positive control (matched vs mismatched)**: for one system and one item, the text written
  for this reader against the text the same system wrote for another held-out reader (its
  "partner"; one who has the same item among their own cases when there is one, so the text
  already exists). The alignment difference ``a(own, r) - a(other, r)`` (``a``: the alignment
  score against reader ``r``) is computed for every system; ``base`` never sees a profile, so
  its row is the control's own null. The judge, with reader ``r``'s persona, compares the two
  texts of the control system in both orders: P(own text wins).
- **Oracle control**: the same comparison for texts made without a model from the item's
  title and each reader's own profile fields (``prompts/oracle.j2``): the most these metrics
  can see.
- **Negative control**: the control system against itself with another sampling seed. Its
  alignment difference and the judge's P(first seed wins) - 0.5 must have CIs that include 0;
  the report says whether they did.

The judge's results count as evidence only if it passes the positive control (its CI on
P(own) lies above 0.5).

Per case, the control texts, their alignment differences and the judge's P values go into
``cases.jsonl`` (``controls``), so ``gravity evaluate report`` recomputes the summary without a
model.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from gravity.evaluate.intervals import BootstrapSettings, clip_ci, crossed_mean
from gravity.prompts import render
from gravity.task import slot_seed

MODES = ("all", "alignment", "off")
"""all: alignment and judge controls; alignment: no extra judge calls; off: none."""

NEGATIVE_ROLE = "describe:negative-control"
"""The sampling-seed role of the negative control's second text (the first is ``describe``)."""


def control_system(systems: Sequence[tuple[str, str]], focus: str) -> str:
    """The system the judge controls and the negative control use: the focus system when it is
    evaluated and sees a profile, else the last one that sees a profile (a ``base`` text for two
    readers differs only by its sampling seed), else the focus or last one. ``systems``: (name,
    kind) pairs."""
    names = [name for name, _ in systems]
    profiled = [name for name, kind in systems if kind != "base"]
    if focus in profiled:
        return focus
    return (profiled or [focus if focus in names else names[-1]])[-1]


def partners(cases: Sequence[Any], seed: int) -> dict[str, Any]:
    """case id -> another held-out reader (a ``UserProfile``) whose text on the case's item is
    the mismatched one: chosen by seed among the readers who have the same item as a case,
    else among all other readers. Empty when there is a single reader."""
    readers = sorted({c.reader.id: c.reader for c in cases}.values(), key=lambda r: r.id)
    by_item: dict[str, list[Any]] = {}
    for c in cases:
        by_item.setdefault(c.book.id, []).append(c.reader)
    chosen: dict[str, Any] = {}
    for c in cases:
        pool = [r for r in by_item[c.book.id] if r.id != c.reader.id]
        pool = pool or [r for r in readers if r.id != c.reader.id]
        if pool:
            pool = sorted(pool, key=lambda r: r.id)
            chosen[c.id] = pool[slot_seed(seed, c.id, "partner") % len(pool)]
    return chosen


def oracle_text(reader: Any, title: str, noun: str) -> str:
    """The oracle control's text for ``reader``: no model, the profile's own fields."""
    from gravity.profiles.countries import country_name

    return render(
        "oracle.j2",
        title=title,
        noun=noun,
        profile=reader,
        country_name=country_name(reader.country),
    )


Describe = Callable[[list[Any], Any, str], list[str]]
"""(cases, system spec, seed role) -> one text per case: the runner's ``describe``."""


def control_texts(
    cases: Sequence[Any],
    descriptions: dict[str, list[str]],
    specs: Sequence[Any],
    focus: str,
    mode: str,
    seed: int,
    noun: str,
    title_field: str,
    describe: Describe,
) -> list[dict[str, Any]]:
    """Per case: the control texts (``mismatched``: system -> the partner's text on the same
    item; ``oracle``: own and other; ``negative``: the control system's text under the other
    seed). A partner's text is the one its own case already has, else one more description."""
    from gravity.evaluate.runner import Case

    chosen = partners(cases, seed)
    index = {c.id: k for k, c in enumerate(cases)}
    missing: dict[str, Any] = {}
    for c in cases:
        p = chosen.get(c.id)
        if p is not None and f"{p.id}:{c.book.id}" not in index:
            missing.setdefault(f"{p.id}:{c.book.id}", Case(p, c.book))
    extra_cases = list(missing.values())
    extra = {s.name: describe(extra_cases, s, "describe") if extra_cases else [] for s in specs}
    system = control_system([(s.name, s.kind) for s in specs], focus)
    spec = next(s for s in specs if s.name == system)
    negative = describe(list(cases), spec, NEGATIVE_ROLE)
    extra_index = {c.id: k for k, c in enumerate(extra_cases)}
    rows = []
    for k, c in enumerate(cases):
        p = chosen.get(c.id)
        if p is None:
            rows.append({})
            continue
        other = f"{p.id}:{c.book.id}"

        def text(name: str, other: str = other) -> str:
            if other in index:
                return descriptions[name][index[other]]
            return extra[name][extra_index[other]]

        title = str(getattr(c.book, title_field))
        rows.append(
            {
                "system": system,
                "mode": mode,
                "partner": p.id,
                "mismatched": {s.name: text(s.name) for s in specs},
                "oracle": {
                    "own": oracle_text(c.reader, title, noun),
                    "other": oracle_text(p, title, noun),
                },
                "negative": {"system": system, "text": negative[k]},
            }
        )
    return rows


CONTROL_PAIRS = ("matched", "oracle", "negative")
"""The judge's control comparisons: own text vs partner's, oracle own vs other, first seed vs
second."""


def judge_pairs(row: dict[str, Any], own: dict[str, str]) -> dict[str, tuple[str, str]]:
    """control -> (the text that should win or tie, the other) for one case's control row."""
    ctl, system = row, row["system"]
    return {
        "matched": (own[system], ctl["mismatched"][system]),
        "oracle": (ctl["oracle"]["own"], ctl["oracle"]["other"]),
        "negative": (own[system], ctl["negative"]["text"]),
    }


def judge_controls(
    views: Sequence[Any],
    own: Sequence[dict[str, str]],
    rows: Sequence[dict[str, Any]],
    judge: Any,
    seed: int,
) -> tuple[list[dict[str, float]], dict[str, Any], list[dict[str, Any]]]:
    """The judge on each case's three control pairs, both orders (``judge_pairwise``): per case
    control -> P(the first text wins), the calls' statistics and the rejects."""
    from dataclasses import replace

    from gravity.evaluate.judge import judge_pairwise

    control_views, texts, slots = [], [], []
    for k, (view, row) in enumerate(zip(views, rows)):
        if not row:
            continue
        for name, (a, b) in judge_pairs(row, own[k]).items():
            control_views.append(replace(view, case_id=f"{view.case_id}#{name}"))
            texts.append({"own": a, "other": b})
            slots.append((k, name))
    result = judge_pairwise(control_views, texts, judge, seed) if slots else None
    out: list[dict[str, float]] = [{} for _ in rows]
    for view, (k, name) in zip(control_views, slots):
        pair = result.pairs.get(view.case_id, {}) if result else {}
        if ("other", "own") in pair:
            out[k][name] = 1.0 - pair[("other", "own")]
    stats = {"calls": result.stats["calls"], "parsed": result.stats["parsed"]} if result else {}
    return out, stats, result.rejects if result else []


def alignment_against(
    texts: Sequence[str], targets: Sequence[str], profiles: dict[str, str]
) -> list[float | None]:
    """For each text, its alignment against the reader ``targets[k]``: cosine similarity to
    that reader's rendered profile minus the mean similarity to the other readers' profiles
    (``profiles``: reader id -> rendered profile). None for an empty text."""
    from gravity.embed import embed

    ids = sorted(profiles)
    index = {r: i for i, r in enumerate(ids)}
    vecs = embed([profiles[r] for r in ids])
    sims = embed([t or " " for t in texts]) @ vecs.T
    out: list[float | None] = []
    for k, (text, target) in enumerate(zip(texts, targets)):
        others = [float(sims[k, j]) for j in range(len(ids)) if j != index[target]]
        ok = bool(text) and bool(others)
        out.append(float(sims[k, index[target]]) - statistics.fmean(others) if ok else None)
    return out


def alignment_controls(
    rows: Sequence[dict[str, Any]], profiles: dict[str, str]
) -> list[dict[str, float | None]]:
    """Per case row (``reader_id``, ``own``: system -> text, ``controls``: the control texts):
    the control alignment differences, keyed ``matched:SYSTEM``, ``oracle`` and ``negative``."""
    texts: list[str] = []
    targets: list[str] = []
    slots: list[tuple[int, str, int]] = []  # (row, key, +1 own side / -1 other side)
    for k, row in enumerate(rows):
        ctl = row["controls"]
        pairs = [(f"matched:{s}", row["own"][s], other) for s, other in ctl["mismatched"].items()]
        pairs.append(("oracle", ctl["oracle"]["own"], ctl["oracle"]["other"]))
        if "negative" in ctl:
            own = row["own"][ctl["negative"]["system"]]
            pairs.append(("negative", own, ctl["negative"]["text"]))
        for key, a, b in pairs:
            for text, sign in ((a, 1), (b, -1)):
                texts.append(text)
                targets.append(row["reader_id"])
                slots.append((k, key, sign))
    scores = alignment_against(texts, targets, profiles)
    out: list[dict[str, float | None]] = [{} for _ in rows]
    for (k, key, sign), v in zip(slots, scores):
        if sign == 1:
            out[k][key] = v
        else:
            own = out[k][key]
            out[k][key] = None if own is None or v is None else own - v
    return out


def _estimate(
    rows: list[tuple[str, str, float]], settings: BootstrapSettings, centre: float = 0.0
) -> dict[str, Any]:
    """The mean over readers of per-case ``value - centre`` (readers who share items: two-way
    standard error), with ``centre`` added back to the value and its CI; a probability's
    (``centre`` 0.5) interval is cut to [0, 1]."""
    est = crossed_mean([(r, i, v - centre) for r, i, v in rows], settings)
    if est["value"] is not None:
        est["value"] += centre
    if est.get("ci") is not None:
        est["ci"] = [c + centre for c in est["ci"]]
    if centre:
        est = clip_ci(est, 0.0, 1.0)
    return {**est, "cases": len(rows)}


def _excludes(est: dict[str, Any], centre: float) -> bool | None:
    """Whether the estimate's CI lies wholly on one side of ``centre``; None without a CI."""
    if est["status"] != "ok" or est.get("ci") is None:
        return None
    lo, hi = est["ci"]
    return lo > centre or hi < centre


def summarize(
    cases: Sequence[dict[str, Any]], settings: BootstrapSettings
) -> dict[str, Any] | None:
    """metrics.json's ``controls`` block from the case rows of ``cases.jsonl`` (``reader_id``,
    ``item_id`` and ``controls``: its texts, ``alignment`` differences and the ``judge``'s P
    values). None when the evaluation ran without controls."""
    rows = [c for c in cases if c.get("controls")]
    if not rows:
        return None
    first = rows[0]["controls"]
    system = first.get("system")

    def gather(key: str, source: str) -> list[tuple[str, str, float]]:
        found = []
        for c in rows:
            v = c["controls"].get(source, {}).get(key)
            if v is not None:
                found.append((c["reader_id"], c.get("item_id") or c["case_id"], v))
        return found

    matched = {
        s: _estimate(gather(f"matched:{s}", "alignment"), settings) for s in first["mismatched"]
    }
    block: dict[str, Any] = {
        "system": system,
        "mode": first.get("mode", "all"),
        "matched": matched,
        "oracle": {"alignment": _estimate(gather("oracle", "alignment"), settings)},
        "negative": {"alignment": _estimate(gather("negative", "alignment"), settings)},
    }
    if block["mode"] == "all":
        block["matched_judge"] = _estimate(gather("matched", "judge"), settings, 0.5)
        block["oracle"]["judge"] = _estimate(gather("oracle", "judge"), settings, 0.5)
        block["negative"]["judge"] = _estimate(gather("negative", "judge"), settings, 0.5)
    return {**block, **_verdicts(block)}


def _verdicts(block: dict[str, Any]) -> dict[str, Any]:
    """What the controls say: whether alignment tells own from other for the control system,
    whether the judge does (validated), whether the negative control held (CIs include 0)."""
    system = block["system"]
    align = block["matched"].get(system)
    sees = None if align is None else _excludes(align, 0.0)
    judge = block.get("matched_judge")
    validated = None
    if judge is not None and judge["status"] == "ok" and judge.get("ci") is not None:
        validated = judge["ci"][0] > 0.5
    negatives = [block["negative"]["alignment"]] + (
        [block["negative"]["judge"]] if "judge" in block["negative"] else []
    )
    centres = [0.0, 0.5]
    outside = [_excludes(est, c) for est, c in zip(negatives, centres)]
    held = None if all(o is None for o in outside) else not any(outside)
    return {
        "alignment_sees_reader": sees if sees is None else bool(sees and align["ci"][0] > 0),
        "judge_validated": validated,
        "negative_held": held,
    }
