"""``gravity run``: the stages a ``RunConfig`` describes, in order. Every LLM call goes through a
store and finished stages are skipped, so a rerun after a crash continues where it stopped."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gravity.books import Book, load_catalog
from gravity.config import ProfilesStage, RunConfig
from gravity.errors import GravityError
from gravity.profiles import dump_profiles, load_many, sample_profiles
from gravity.profiles.io import atomic_write_text
from gravity.profiles.models import UserProfile


def build_profiles(stage: ProfilesStage) -> list[UserProfile]:
    """Readers loaded from files plus those sampled for each configured country."""
    profiles = list(load_many(stage.files)) if stage.files else []
    if stage.events is not None:
        from gravity.events import read_events_dir
        from gravity.events.infer import infer_profiles

        profiles.extend(infer_profiles(read_events_dir(stage.events), stage.infer).profiles)
    if stage.n_per_country:
        for country in stage.countries:
            profiles.extend(
                sample_profiles(country, stage.n_per_country, stage.seed, stage.sampler)
            )
    counts = Counter(p.id for p in profiles)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    if duplicates:
        raise GravityError(f"profiles: duplicate reader ids across sources: {duplicates}")
    return profiles


def _catalog(path: Path | None) -> list[Book]:
    """The catalog file, or the most rated items of an events folder."""
    if path is not None and path.is_dir():
        from gravity.events import read_events_dir
        from gravity.events.books import books_from_events

        return books_from_events(read_events_dir(path))
    return load_catalog(path)


def split_books(catalog: list[Book], n_heldout: int, seed: int) -> tuple[list[Book], list[Book]]:
    """Seeded split into (training books, held-out books)."""
    if n_heldout >= len(catalog):
        raise GravityError(
            f"heldout_books: {n_heldout} leaves no training books (catalog has {len(catalog)})"
        )
    order = sorted(catalog, key=lambda b: b.id)
    random.Random(f"gravity-book-split:{seed}").shuffle(order)
    held = sorted(order[:n_heldout], key=lambda b: b.id)
    return sorted(order[n_heldout:], key=lambda b: b.id), held


def _write_books(path: Path, books: list[Book]) -> None:
    atomic_write_text(
        path,
        "".join(json.dumps(b.model_dump(mode="json"), ensure_ascii=False) + "\n" for b in books),
    )


def _stage(name: str) -> float:
    print(f"== {name}", flush=True)
    return time.monotonic()


def run_pipeline(cfg: RunConfig, progress: bool = True) -> dict[str, Any]:
    """Execute every stage of ``cfg`` under ``cfg.out_dir``; returns the evaluation metrics."""
    from gravity.evaluate import SystemSpec, evaluate
    from gravity.export import export_run
    from gravity.synth import synthesize
    from gravity.train import train

    out = cfg.out_dir
    readers, heldout = build_profiles(cfg.profiles), build_profiles(cfg.heldout)
    overlap = sorted({p.id for p in readers} & {p.id for p in heldout})
    if overlap:
        raise GravityError(
            f"heldout: readers {overlap[:5]} are also training readers; "
            "use another heldout.seed or other files"
        )
    train_books, held_books = split_books(_catalog(cfg.books), cfg.heldout_books, cfg.generate.seed)
    out.mkdir(parents=True, exist_ok=True)
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

    data: dict[str, Path] = {}
    for mode in cfg.modes:
        start = _stage(f"generate ({mode})")
        gen = cfg.generate.model_copy(update={"mode": mode, "books": out / "books-train.jsonl"})
        result = synthesize(readers, gen, out / f"pairs-{mode}", progress=progress)
        s = result.summary
        print(
            f"{mode}: {s['rows_in']} rows in = {s['written']} written + {s['rejected']} "
            f"rejected {s['rejects_by_reason']}"
        )
        data[mode] = out / f"data-{mode}"
        export_run(out / f"pairs-{mode}", data[mode], "hf", cfg.test_size, cfg.generate.seed)
        timings[f"generate_{mode}"] = time.monotonic() - start

    systems = list(cfg.evaluate.systems)
    for name in cfg.train_systems:
        model_dir = out / "models" / name
        start = _stage(f"train {name}")
        if (model_dir / "metrics.json").is_file():
            print(f"{name}: already trained ({model_dir})")
        else:
            kind = "sft" if name == "sft" else "dpo"
            source = data["naive" if name == "naive" else "gravity"]
            summary = train(kind, source, model_dir, cfg.train)  # type: ignore[arg-type]
            print(f"{name}: {summary['steps']} steps, loss {summary['train_loss']:.4f}")
        timings[f"train_{name}"] = time.monotonic() - start
        systems.append(SystemSpec(name=name, kind="model", model=str(model_dir)))

    start = _stage("evaluate")
    eval_cfg = cfg.evaluate.model_copy(
        update={
            "systems": systems,
            "books": out / "books-heldout.jsonl",
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
