"""Export a synthesis run as a dataset in TRL's conversational preference format.

Train/test split by reader (no reader in both), seeded; ``hf`` (``save_to_disk``), ``parquet``
or ``jsonl``; a dataset card with YAML metadata. The export is atomic: it is built in a temp
folder beside ``out`` and swapped in, so an interrupted export leaves the previous one intact.
``push_to_hub`` is opt-in; the token is read from ``HF_TOKEN`` only and never written anywhere.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field

from gravity.errors import GravityError
from gravity.intents.select import intent_counts
from gravity.io import swap_dir_into_place, temp_dir
from gravity.preference import PREFERENCE_COLUMNS, PreferenceRow

Format = Literal["hf", "parquet", "jsonl"]
FORMATS = ("hf", "parquet", "jsonl")


class PairRow(PreferenceRow):
    """A record of a run's ``pairs.jsonl``: the TRL columns and the reader it was made for."""

    user_id: Annotated[str, Field(min_length=1)]
    book_id: str | None = None


def read_pairs(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run folder (``pairs.jsonl``); any failure reading it names the file."""
    from gravity.io import file_error, jsonl_records, read_text, validate

    path = run_dir / "pairs.jsonl"
    if not path.is_file():
        raise GravityError(f"{run_dir}: no pairs.jsonl; is this a `gravity generate` run folder?")
    rows = []
    kinds: dict[str, tuple[str, int]] = {}  # column -> (JSON kind, first line): Arrow needs one
    for record in jsonl_records(read_text(path), path):
        if record.problem is not None:
            raise record.problem
        row = record.data
        if not isinstance(row, dict):
            raise file_error(path, "a pair must be a mapping", record.line, "<record>")
        missing = [c for c in (*PREFERENCE_COLUMNS, "user_id") if c not in row]
        if missing:
            raise GravityError(f"{path}:{record.line}: missing field(s) {', '.join(missing)}")
        validate(PairRow, row, path, record.line, empty="<record>")
        for key, value in row.items():
            kind = _json_kind(value)
            first = kinds.setdefault(key, (kind, record.line))
            if first[0] in _VAGUE:
                kinds[key] = (kind, record.line)
            elif not _same_kind(kind, first[0]):
                raise file_error(
                    path, f"{kind} here, {first[0]} on line {first[1]}", record.line, key
                )
        rows.append(row)
    if not rows:
        raise GravityError(f"{path}: no pairs to export (every row was rejected?)")
    return rows


_VAGUE = ("null", "a list of nothing")


def _same_kind(a: str, b: str) -> bool:
    """Whether Arrow can hold both in one column: null fits any, an empty list any list."""
    if a == b or "null" in (a, b):
        return True
    return "a list of nothing" in (a, b) and a.startswith("a list") and b.startswith("a list")


def _json_kind(value: Any, depth: int = 0) -> str:
    """A column's JSON kind, one list level deep ('text', 'a list of a mapping', ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        if depth:
            return "a list"
        inner = sorted({_json_kind(v, depth + 1) for v in value} - {"null"})
        return f"a list of {' and '.join(inner) or 'nothing'}"
    return "a mapping"


def split_by_user(
    rows: list[dict[str, Any]], test_size: float, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Seeded split of readers into train and test; every row follows its reader."""
    users = sorted({r["user_id"] for r in rows})
    random.Random(f"gravity-split:{seed}").shuffle(users)
    n_test = round(len(users) * test_size)
    if test_size > 0 and len(users) > 1:
        n_test = min(max(n_test, 1), len(users) - 1)
    test_users = set(users[:n_test])
    splits = {
        "train": [r for r in rows if r["user_id"] not in test_users],
        "test": [r for r in rows if r["user_id"] in test_users],
    }
    return {name: part for name, part in splits.items() if part}


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "pairs": len(rows),
        "users": len({r["user_id"] for r in rows}),
        "items": len({r.get("item_id") for r in rows}),
        "by_country": dict(sorted(Counter(r.get("country", "?") for r in rows).items())),
        "by_facet": dict(sorted(Counter(r.get("facet", "?") for r in rows).items())),
        "by_intent": intent_counts(rows),  # where an intent graph was used
    }


def dataset_card(run_dir: Path, splits: dict[str, list[dict[str, Any]]], license: str) -> str:
    """README.md for the dataset: YAML metadata, config, counts, per-country/facet stats."""
    config_path, summary_path = run_dir / "config.yaml", run_dir / "summary.json"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    rows = [r for part in splits.values() for r in part]
    models = sorted({r.get("generator_model", "?") for r in rows})
    tasks = sorted({(r.get("task") or "?", r.get("task_digest") or "?") for r in rows})
    task = (
        {"name": tasks[0][0], "digest": tasks[0][1]}
        if len(tasks) == 1
        else {"name": "mixed", "digest": ", ".join(f"{n}:{d}" for n, d in tasks)}
    )
    stats = {name: _stats(part) for name, part in splits.items()}
    total = len(rows)
    size = "n<1K" if total < 1000 else "1K<n<10K" if total < 10000 else "10K<n<100K"
    meta = {
        "license": license,
        "task_categories": ["text-generation"],
        "tags": ["dpo", "preference", "personalization", "synthetic", "gravity"],
        "size_categories": [size],
        "pretty_name": "gravity personalized preference pairs",
        "gravity": {"task": task, "generation_models": models, "splits": stats},
    }
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        "# gravity preference pairs",
        "",
        f"Synthetic, profile-grounded preference pairs for the task `{task['name']}` (task "
        f"digest {task['digest']}), made "
        "by `gravity generate` and exported by `gravity export`. Columns `prompt`, `chosen`, "
        "`rejected` follow TRL's conversational preference format; the rest is metadata "
        "(record/user/item ids, task and its digest, country, facet, scenario, rejected "
        "strategy, mode, models, "
        "template hashes, seed; with an intent graph, the intent of the reader's path to the "
        "book and the intent a rejected description was written for). Splits are by reader: "
        "no reader is in two splits.",
        "",
        "## Counts",
        "",
        "| split | pairs | readers | items |",
        "|---|---|---|---|",
    ]
    lines += _count_tables(stats, summary)
    lines += ["", "## Generation models", ""] + [f"- `{m}`" for m in models]
    lines += [
        "",
        "## Generation config",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _count_tables(stats: dict[str, dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """The card's count rows: per split, the generation summary, per country, facet and intent."""
    lines = [
        f"| {name} | {st['pairs']} | {st['users']} | {st['items']} |" for name, st in stats.items()
    ]
    if summary:
        lines += [
            "",
            f"Generation: {summary.get('rows_in')} rows in = {summary.get('written')} written + "
            f"{summary.get('rejected')} rejected; rejects by reason: "
            f"{json.dumps(summary.get('rejects_by_reason', {}))}.",
        ]
    for key, title in (("by_country", "country"), ("by_facet", "facet"), ("by_intent", "intent")):
        keys = sorted({k for st in stats.values() for k in st[key]})
        if not keys:  # no intent graph was used
            continue
        lines += [
            "",
            f"## Pairs per {title}",
            "",
            "| " + title + " | " + " | ".join(stats) + " |",
            "|---|" + "---|" * len(stats),
        ]
        for k in keys:
            lines.append(
                f"| {k} | " + " | ".join(str(st[key].get(k, 0)) for st in stats.values()) + " |"
            )
    return lines


def export_run(
    run_dir: str | Path,
    out: str | Path,
    fmt: str = "hf",
    test_size: float = 0.2,
    seed: int = 0,
    license: str = "apache-2.0",
    push_to_hub: str | None = None,
    private: bool = False,
) -> dict[str, Any]:
    """Export ``run_dir`` to ``out``; returns the per-split stats."""
    from datasets import Dataset, DatasetDict

    if fmt not in FORMATS:
        raise GravityError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")
    if not 0 <= test_size < 1:
        raise GravityError(f"--test-size: {test_size} is not in [0, 1)")
    run_dir, out = Path(run_dir), Path(out)
    rows = read_pairs(run_dir)
    splits = split_by_user(rows, test_size, seed)
    dd = DatasetDict({name: Dataset.from_list(part) for name, part in splits.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(out.parent, f".{out.name}.tmp-")
    try:
        if fmt == "hf":
            dd.save_to_disk(str(tmp / "dataset"))
            for item in (tmp / "dataset").iterdir():
                os.replace(item, tmp / item.name)
            (tmp / "dataset").rmdir()
        else:
            for name, ds in dd.items():
                if fmt == "parquet":
                    ds.to_parquet(str(tmp / f"{name}.parquet"))
                else:
                    ds.to_json(str(tmp / f"{name}.jsonl"), lines=True, force_ascii=False)
        (tmp / "README.md").write_text(dataset_card(run_dir, splits, license), encoding="utf-8")
        swap_dir_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if push_to_hub:
        push(dd, out / "README.md", push_to_hub, private)
    return {name: _stats(part) for name, part in splits.items()}


def push(dd: Any, card: Path, repo: str, private: bool) -> None:
    """Upload the dataset and its card; the token comes from ``HF_TOKEN`` only."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise GravityError("--push-to-hub needs a token in the HF_TOKEN environment variable")
    dd.push_to_hub(repo, private=private, token=token)
    from huggingface_hub import HfApi

    HfApi(token=token).upload_file(
        path_or_fileobj=str(card), path_in_repo="README.md", repo_id=repo, repo_type="dataset"
    )
