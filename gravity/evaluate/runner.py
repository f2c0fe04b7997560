"""``gravity evaluate``: every system describes held-out books for held-out readers; the persona
judge ranks them; an offline embedding score measures how specific each text is to its reader.

Writes to the output folder: ``cases.jsonl`` (reader, book, every system's description, its
alignment, copy rate and length), ``judgments.jsonl`` (per case: pairwise scores and interest),
``rejects.jsonl``, ``metrics.json``, ``report.md`` and PNG plots.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gravity.books import load_catalog
from gravity.errors import GravityError
from gravity.evaluate.config import EvalConfig, SystemSpec
from gravity.evaluate.controls import (
    alignment_controls,
    control_texts,
    judge_controls,
    summarize,
)
from gravity.evaluate.copying import copy_rate
from gravity.evaluate.judge import CaseView, judge_interest, judge_pairwise, judge_ranking
from gravity.evaluate.length import length_controlled, mean_words
from gravity.evaluate.metrics import (
    BootstrapSettings,
    CaseValues,
    agreement_with_alignment,
    compute_metrics,
    outcome_from_pairs,
)
from gravity.evaluate.power import power_rows
from gravity.io import atomic_write_text, reading
from gravity.items import Item
from gravity.judging import LabelJudge
from gravity.llm import ChatRequest, Message, SamplingParams, make_backend
from gravity.llm.embedded import is_embedded
from gravity.llm.engine import Engine, Reject
from gravity.profiles.models import UserProfile
from gravity.store import Store
from gravity.task import choose_books, clean_text, deployed_messages, finished_text, slot_seed
from gravity.taskspec import Task, load_task


@dataclass(frozen=True)
class Case:
    """One reader x one held-out book."""

    reader: UserProfile
    book: Item

    @property
    def id(self) -> str:
        return f"{self.reader.id}:{self.book.id}"


def training_ids(paths: list[Path]) -> tuple[set[str], set[str]]:
    """Reader ids and book ids found in training runs (pairs.jsonl) or exports."""
    users: set[str] = set()
    books: set[str] = set()
    for path in paths:
        with reading(path):  # any failure reading a training folder is one line naming it
            rows = _training_rows(path)
            users |= {r["user_id"] for r in rows if r.get("user_id")}
            # Data made before tasks (issue 22) names items ``book_id``.
            books |= {
                r.get("item_id") or r["book_id"]
                for r in rows
                if r.get("item_id") or r.get("book_id")
            }
    return users, books


def _training_rows(path: Path) -> list[dict]:
    from gravity.preference import load_preference_data

    if path.is_dir():
        from gravity.io import settle_commit

        settle_commit(path)  # a run's finish a kill left half done: what export would read
    if (path / "pairs.jsonl").is_file():
        return [json.loads(x) for x in (path / "pairs.jsonl").read_text().splitlines() if x]
    if (path / "dataset_dict.json").is_file():  # every split of an export was seen
        from datasets import load_from_disk

        splits = list(load_from_disk(str(path)).values())
    elif path.is_dir():
        names = [n for n in ("train", "test") if any(path.glob(f"{n}.*"))]
        splits = [load_preference_data(path, n) for n in names or ["train"]]
    else:
        splits = [load_preference_data(path)]
    rows = []
    for split in splits:
        cols = [c for c in ("user_id", "item_id", "book_id") if c in split.column_names]
        rows += split.select_columns(cols).to_list() if cols else []
    return rows


def recorded_training_data(cfg: EvalConfig) -> tuple[list[Path], list[str]]:
    """The training data each evaluated model folder records (``train_config.yaml``: ``data``),
    and a note for each model whose data cannot be checked."""
    import yaml

    paths: list[Path] = []
    notes: list[str] = []
    for spec in cfg.systems:
        if spec.kind != "model" or not spec.model:
            continue
        record = Path(spec.model) / "train_config.yaml"
        if not record.is_file():
            notes.append(f"{spec.name}: no train_config.yaml in {spec.model}; leakage not checked")
            continue
        data = (yaml.safe_load(record.read_text(encoding="utf-8")) or {}).get("data")
        if not data or not Path(data).exists():
            notes.append(f"{spec.name}: recorded training data '{data}' not found; not checked")
            continue
        if Path(data) not in paths:
            paths.append(Path(data))
    return paths, notes


def check_held_out(cases: list[Case], train_paths: list[Path]) -> None:
    """Refuse readers or books that training saw."""
    if not train_paths:
        return
    users, books = training_ids(train_paths)
    leaked_users = sorted({c.reader.id for c in cases} & users)
    leaked_books = sorted({c.book.id for c in cases} & books)
    if leaked_users or leaked_books:
        parts = []
        if leaked_users:
            parts.append(f"readers {leaked_users[:5]}")
        if leaked_books:
            parts.append(f"books {leaked_books[:5]}")
        raise GravityError(
            "held-out evaluation would reuse training data: "
            + " and ".join(parts)
            + " appear in "
            + ", ".join(str(p) for p in train_paths)
        )


def build_cases(readers: list[UserProfile], catalog: list[Item], cfg: EvalConfig) -> list[Case]:
    """Each reader with ``items_per_reader`` seeded books."""
    return [
        Case(reader, book)
        for reader in sorted(readers, key=lambda r: r.id)
        for book in choose_books(reader, catalog, cfg.items_per_reader, cfg.seed)
    ]


def system_model(spec: SystemSpec, cfg: EvalConfig) -> str:
    return spec.model if spec.kind == "model" and spec.model else cfg.base_model


def describe(
    cases: list[Case],
    spec: SystemSpec,
    cfg: EvalConfig,
    store: Store,
    progress: bool,
    role: str = "describe",
) -> list[str]:
    """One description per case from system ``spec`` (empty string if it produced nothing);
    ``role`` names the sampling seeds (the negative control samples with another)."""
    backend_cfg = cfg.generation.model_copy(update={"model": system_model(spec, cfg)})
    requests = []
    task = load_task(cfg.task)
    for case in cases:
        profile = None if spec.kind == "base" else case.reader
        messages = [Message(**m) for m in deployed_messages(profile, case.book, task)]
        requests.append(ChatRequest(messages=messages, id=case.id))
    params = [
        SamplingParams(
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            seed=slot_seed(cfg.seed, case.id, role),
        )
        for case in cases
    ]
    desc = f"describe[{spec.name}]" if role == "describe" else f"{role}[{spec.name}]"
    with make_backend(backend_cfg) as backend:
        outs = Engine(backend, store, progress=progress).generate(requests, params, desc=desc)
    texts = []
    for out in outs:
        # Cut at the last full sentence; a truncated text without one is kept as written (the
        # judge sees what the system wrote); only an empty output counts as no description.
        text = finished_text(out, "trim")
        texts.append(clean_text(out.text) if isinstance(text, Reject) else text)
    return texts


def _name(model: str) -> str:
    return "smollm2" if is_embedded(model) else model


def generator_models(cfg: EvalConfig) -> dict[str, str]:
    """system -> the model its text comes from (a trained system: the base it was trained on)."""
    import yaml

    models = {}
    for spec in cfg.systems:
        model = system_model(spec, cfg)
        record = Path(model) / "train_config.yaml"
        if spec.kind == "model" and record.is_file():
            model = (yaml.safe_load(record.read_text(encoding="utf-8")) or {}).get("model", model)
        models[spec.name] = _name(str(model))
    return models


def alignment_scores(
    cases: list[Case], descriptions: dict[str, list[str]], task: Task | None = None
) -> CaseValues:
    """case id -> system -> cos(text, own profile) - mean cos(text, other readers' profiles).

    None where the text is empty or there is no other reader to compare with.
    """
    from gravity.embed import embed

    readers = sorted({c.reader.id: c.reader for c in cases}.values(), key=lambda r: r.id)
    index = {r.id: i for i, r in enumerate(readers)}
    task = task if task is not None else load_task()
    profile_vecs = embed([task.profile_text(r) for r in readers])
    scores: CaseValues = {c.id: {} for c in cases}
    for system, texts in descriptions.items():
        sims = embed([t or " " for t in texts]) @ profile_vecs.T
        for k, case in enumerate(cases):
            own = index[case.reader.id]
            others = [float(sims[k, j]) for j in range(len(readers)) if j != own]
            ok = texts[k] and others
            scores[case.id][system] = float(sims[k, own]) - statistics.fmean(others) if ok else None
    return scores


def copy_rates(
    cases: list[Case], descriptions: dict[str, list[str]], task: Task | None = None
) -> CaseValues:
    """case id -> system -> copy rate of the description against the reader's rendered profile
    (the text the profile-prompted systems saw; for ``base`` a chance level)."""
    task = task if task is not None else load_task()
    profiles = {c.reader.id: task.profile_text(c.reader) for c in cases}
    return {
        c.id: {s: copy_rate(texts[k], profiles[c.reader.id]) for s, texts in descriptions.items()}
        for k, c in enumerate(cases)
    }


def run_judge(
    cases: list[Case], descriptions: dict[str, list[str]], cfg: EvalConfig, engine: Engine
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Judge every case with the configured protocol; returns (per-case pairs and interest,
    judge statistics, rejects)."""
    judge = LabelJudge(engine, cfg.judge_method, cfg.judge_max_new_tokens)
    task = load_task(cfg.task)
    views = [
        CaseView(c.id, c.reader.id, c.reader.country, task.profile_text(c.reader), c.book, task)
        for c in cases
    ]
    texts = [{s: descriptions[s][k] for s in descriptions} for k in range(len(cases))]
    protocol = judge_pairwise if cfg.protocol == "pairwise" else judge_ranking
    result = protocol(views, texts, judge, cfg.seed)
    interest, interest_stats, interest_rejects = judge_interest(views, texts, judge, cfg.seed)
    calls = result.stats["calls"] + interest_stats["calls"]
    parsed = result.stats["parsed"] + interest_stats["parsed"]
    stats = {
        **result.stats,
        "method": judge.method,
        "calls": calls,
        "parsed": parsed,
        "parse_rate": parsed / calls if calls else None,
        "interest_calls": interest_stats["calls"],
    }
    per_case = {"pairs": result.pairs, "interest": interest}
    return per_case, stats, result.rejects + interest_rejects


def _case_rows(
    cases: list[Case],
    descriptions: dict[str, list[str]],
    values: dict[str, CaseValues],
    words: dict[str, dict[str, int]],
    controls: list[dict[str, Any]],
    task: Task,
) -> list[dict[str, Any]]:
    """The rows of ``cases.jsonl``: each case's texts, values and (if run) controls."""
    rows = []
    for k, c in enumerate(cases):
        row = {
            "case_id": c.id,
            "reader_id": c.reader.id,
            "country": c.reader.country,
            "item_id": c.book.id,
            "item_title": getattr(c.book, task.spec.item.title_field),
            "task": task.ref,
            "task_digest": task.digest,
            "profile_text": task.profile_text(c.reader),
            "descriptions": {s: descriptions[s][k] for s in descriptions},
            **{name: table[c.id] for name, table in values.items()},
            "words": words[c.id],
        }
        if controls and controls[k]:
            row["controls"] = controls[k]
        rows.append(row)
    return rows


def _write_outputs(
    out: Path,
    case_rows: list[dict[str, Any]],
    per_case: dict[str, Any],
    rejects: list[dict[str, Any]],
) -> None:
    judged = [
        {
            "case_id": case_id,
            "pairs": [[s, b, v] for (s, b), v in sorted(pairs.items())],
            "interest": per_case["interest"].get(case_id, {}),
        }
        for case_id, pairs in per_case["pairs"].items()
    ]

    def jsonl(rows: list[dict[str, Any]]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    atomic_write_text(out / "cases.jsonl", jsonl(case_rows))
    atomic_write_text(out / "judgments.jsonl", jsonl(judged))
    atomic_write_text(out / "rejects.jsonl", jsonl(rejects))


def run_controls(
    cases: list[Case],
    descriptions: dict[str, list[str]],
    cfg: EvalConfig,
    store: Store,
    progress: bool,
) -> list[dict[str, Any]]:
    """The controls' texts and alignment differences per case (``controls.py``); [] when
    ``cfg.controls`` is ``off``."""
    if cfg.controls == "off":
        return []
    task = load_task(cfg.task)
    rows = control_texts(
        cases,
        descriptions,
        cfg.systems,
        cfg.focus,
        cfg.controls,
        cfg.seed,
        task.noun,
        task.spec.item.title_field,
        lambda some, spec, role: describe(some, spec, cfg, store, progress, role),
    )
    profiles = {c.reader.id: task.profile_text(c.reader) for c in cases}
    own = [{s: descriptions[s][k] for s in descriptions} for k in range(len(cases))]
    with_rows = [
        {"reader_id": c.reader.id, "own": own[k], "controls": row}
        for k, (c, row) in enumerate(zip(cases, rows))
        if row
    ]
    differences = iter(alignment_controls(with_rows, profiles))
    for row in rows:
        if row:
            row["alignment"] = next(differences)
    return rows


def _judge_controls(
    cases: list[Case],
    descriptions: dict[str, list[str]],
    controls: list[dict[str, Any]],
    cfg: EvalConfig,
    engine: Engine,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The judge on the controls (``controls: all``): P values into each control row; returns
    the calls' statistics and the rejects."""
    if cfg.controls != "all" or not controls:
        return {}, []
    task = load_task(cfg.task)
    judge = LabelJudge(engine, cfg.judge_method, cfg.judge_max_new_tokens)
    views = [
        CaseView(c.id, c.reader.id, c.reader.country, task.profile_text(c.reader), c.book, task)
        for c in cases
    ]
    own = [{s: descriptions[s][k] for s in descriptions} for k in range(len(cases))]
    values, stats, rejects = judge_controls(views, own, controls, judge, cfg.seed)
    for row, found in zip(controls, values):
        if row:
            row["judge"] = found
    return stats, rejects


def evaluate(
    readers: list[UserProfile], cfg: EvalConfig, out: Path, progress: bool = True
) -> dict[str, Any]:
    """Run the whole evaluation into ``out``; returns the metrics written to metrics.json."""
    from gravity.evaluate.report import write_report

    if len({r.id for r in readers}) < 2:
        raise GravityError("evaluation needs at least two held-out readers")
    task = load_task(cfg.task)
    cases = build_cases(readers, load_catalog(cfg.catalog, task), cfg)
    train_data, leakage_notes = list(cfg.train_data), []
    if not train_data:
        train_data, leakage_notes = recorded_training_data(cfg)
    check_held_out(cases, train_data)
    out.mkdir(parents=True, exist_ok=True)
    with Store(out / "store.sqlite") as store:
        descriptions = {
            spec.name: describe(cases, spec, cfg, store, progress) for spec in cfg.systems
        }
        controls = run_controls(cases, descriptions, cfg, store, progress)
        with make_backend(cfg.judge) as judge_backend:
            engine = Engine(judge_backend, store, progress=progress)
            per_case, judge_stats, rejects = run_judge(cases, descriptions, cfg, engine)
            control_stats, control_rejects = _judge_controls(
                cases, descriptions, controls, cfg, engine
            )
    values = {
        "alignment": alignment_scores(cases, descriptions, task),
        "copy_rate": copy_rates(cases, descriptions, task),
    }
    words = {
        c.id: {s: len(descriptions[s][k].split()) for s in descriptions}
        for k, c in enumerate(cases)
    }
    case_rows = _case_rows(cases, descriptions, values, words, controls, task)
    _write_outputs(out, case_rows, per_case, rejects + control_rejects)
    metrics = _metrics(cases, case_rows, per_case, values, words, cfg)
    metrics["judge"] = {
        **judge_stats,
        **_judge_provenance(cfg),
        **metrics["judge"],
        "rejected": len(rejects),
    }
    if metrics["controls"] is not None and control_stats:
        metrics["controls"]["judge_calls"] = {**control_stats, "rejected": len(control_rejects)}
    metrics["leakage"] = {
        "checked_against": [str(p) for p in train_data],
        "notes": leakage_notes,
    }
    write_report(out, metrics, cfg)
    return metrics


def _metrics(
    cases: list[Case],
    case_rows: list[dict[str, Any]],
    per_case: dict[str, Any],
    values: dict[str, CaseValues],
    words: dict[str, dict[str, int]],
    cfg: EvalConfig,
) -> dict[str, Any]:
    """metrics.json's figures (all but the judge's call statistics and the held-out check)."""
    systems = [s.name for s in cfg.systems]
    meta = {c.id: (c.reader.id, c.reader.country) for c in cases}
    outcomes = [
        outcome_from_pairs(case_id, *meta[case_id], pairs, per_case["interest"].get(case_id))
        for case_id, pairs in per_case["pairs"].items()
    ]
    settings = BootstrapSettings(
        cfg.bootstrap, cfg.bootstrap_method, 0.95, cfg.seed, cfg.min_readers
    )
    items = {c.id: c.book.id for c in cases}
    metrics = compute_metrics(outcomes, meta, systems, cfg.focus, values, settings, items)
    metrics["judge"] = {
        "agreement_with_alignment": agreement_with_alignment(outcomes, values["alignment"])
    }
    metrics["length"] = _length_metrics(outcomes, words, meta, systems)
    add_controls_and_power(metrics, case_rows, settings)
    metrics["task"] = _task_meta(load_task(cfg.task))
    metrics["cases"] = len(cases)
    metrics["readers"] = len({c.reader.id for c in cases})
    return metrics


def add_controls_and_power(
    metrics: dict[str, Any],
    case_rows: list[dict[str, Any]],
    settings: BootstrapSettings,
    judge_calls: dict[str, Any] | None = None,
) -> None:
    """metrics.json's ``controls`` (None without them) and ``power`` blocks."""
    controls = summarize(case_rows, settings)
    if controls is not None and judge_calls:
        controls["judge_calls"] = judge_calls
    metrics["controls"] = controls
    metrics["power"] = power_rows(metrics)


def _task_meta(task: Task) -> dict[str, str]:
    """What metrics.json and the report say of the task."""
    return {
        "name": task.name,
        "version": task.spec.version,
        "digest": task.digest,
        "noun": task.noun,
        "ref": task.ref,
    }


def _length_metrics(
    outcomes: list[Any],
    words: dict[str, dict[str, int]],
    meta: dict[str, tuple[str, str]],
    systems: list[str],
) -> dict[str, Any]:
    """Mean words per system, overall and per country, and the length-controlled win rates."""
    return {
        "mean_words": mean_words(words, systems),
        "mean_words_by_country": {
            country: mean_words({c: w for c, w in words.items() if meta[c][1] == country}, systems)
            for country in sorted({country for _, country in meta.values()})
        },
        **length_controlled(outcomes, words, systems),
    }


def _judge_provenance(cfg: EvalConfig) -> dict[str, Any]:
    """The judge's backend and model, and the systems it judges that it also wrote."""
    generators = generator_models(cfg)
    judge_name = _name(cfg.judge.model)
    return {
        "backend": cfg.judge.backend,
        "model": judge_name,
        "self_preference_systems": sorted(s for s, m in generators.items() if m == judge_name),
    }
