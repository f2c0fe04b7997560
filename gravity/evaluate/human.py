"""Human evaluation: the same comparison as ranking sheets for people, and back to metrics.

``export_sheets`` writes, from an evaluation folder, ``sheets.csv`` (one row per distinct
description, blank ``rank``, ``interest`` and ``rater_id`` columns), one self-contained HTML form
per reader (it checks the answers and downloads them as ``rankings-<reader>-<rater>.csv``) and
``key.json`` (which label is which system; keep it from raters). Identical descriptions are shown
once, so raters never rank two copies of one text.

``import_rankings`` validates every filled CSV completely before writing anything, keeps each
rater's answers in ``ratings/<rater>.csv`` (an import replaces only the raters it brings), and
writes ``human-metrics.json`` and ``report.md`` over all raters imported so far, with
Krippendorff's alpha when two or more raters ranked the same descriptions.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from gravity.errors import GravityError
from gravity.evaluate.judge import candidate_groups, labels_for, permutation
from gravity.evaluate.metrics import (
    BootstrapSettings,
    Judgment,
    compute_metrics,
    outcomes_from_judgments,
)
from gravity.io import atomic_write_text
from gravity.taskspec import Task, load_task

COLUMNS = [
    "case_id",
    "reader_id",
    "country",
    "item_title",
    "label",
    "description",
    "rank",
    "interest",
    "rater_id",
]
REQUIRED = ("case_id", "reader_id", "country", "label", "rank", "rater_id")
RATER = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_FILE_BYTES = 20 * 1024 * 1024


def _read_cases(eval_dir: Path) -> list[dict[str, Any]]:
    path = eval_dir / "cases.jsonl"
    if not path.is_file():
        raise GravityError(f"{eval_dir}: no cases.jsonl; is this a `gravity evaluate` folder?")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _html(source: str, **variables: Any) -> str:
    """Render an HTML template (a task's human form) with autoescaping (texts are data)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)
    return env.from_string(source).render(**variables)


def export_sheets(
    eval_dir: str | Path, out: str | Path, seed: int = 0, show_profile: bool = False
) -> int:
    """Write sheets.csv, key.json and reader-<id>.html; returns the number of cases.

    ``show_profile``: the forms show the reader's profile, for raters who judge on a reader's
    behalf; otherwise the form says it is for that reader to fill in as themselves.
    """
    eval_dir, out = Path(eval_dir), Path(out)
    cases = _read_cases(eval_dir)
    if show_profile and any("profile_text" not in c for c in cases):
        raise GravityError(f"{eval_dir}/cases.jsonl: no profile_text; rerun `gravity evaluate`")
    rows, key = _sheet_rows(cases, seed)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "sheets.csv", buffer.getvalue())
    atomic_write_text(out / "key.json", json.dumps(key, indent=2) + "\n")
    profiles = {c["reader_id"]: c.get("profile_text", "") for c in cases}
    task = load_task(next((c["task"] for c in cases if c.get("task")), None))
    _write_forms(out, rows, profiles if show_profile else None, task)
    return len(cases)


def _sheet_rows(
    cases: list[dict[str, Any]], seed: int
) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[str]]]]:
    """(one sheet row per case and candidate label, the key: case -> label -> systems). Systems
    that wrote the same text share a label; labels are shuffled per case, not as the judge saw."""
    rows, key = [], {}
    for case in cases:
        groups = {g[0]: g for g in candidate_groups(case["descriptions"])}
        order = permutation(list(groups), case["case_id"], 0, seed + 1)  # not the judge's order
        labels = labels_for(len(order))
        key[case["case_id"]] = {label: groups[rep] for label, rep in zip(labels, order)}
        for label, rep in zip(labels, order):
            rows.append(
                {
                    "case_id": case["case_id"],
                    "reader_id": case["reader_id"],
                    "country": case["country"],
                    # An evaluation made before tasks (issue 22) names it book_title.
                    "item_title": case.get("item_title", case.get("book_title", "")),
                    "label": label,
                    "description": case["descriptions"][rep],
                    "rank": "",
                    "interest": "",
                    "rater_id": "",
                }
            )
    return rows, key


def _write_forms(
    out: Path, rows: list[dict[str, Any]], profiles: dict[str, str] | None, task: Task
) -> None:
    """reader-<id>.html for every reader of ``rows``; ``profiles`` (reader -> profile text) are
    shown when given."""
    for reader in sorted({r["reader_id"] for r in rows}):
        mine = [r for r in rows if r["reader_id"] == reader]
        form_cases = [
            {
                "case_id": case_id,
                "item_title": next(r["item_title"] for r in mine if r["case_id"] == case_id),
                "candidates": [
                    {"label": r["label"], "text": r["description"]}
                    for r in mine
                    if r["case_id"] == case_id
                ],
            }
            for case_id in dict.fromkeys(r["case_id"] for r in mine)
        ]
        page = _html(
            task.sources["human_form"][1],
            task=task.view(),
            reader=reader,
            profile_text=profiles[reader] if profiles is not None else "",
            cases=form_cases,
            rows=mine,
            columns=COLUMNS,
        )
        atomic_write_text(out / f"reader-{reader}.html", page)


def _parse_file(path: Path, key: dict[str, dict[str, list[str]]]) -> list[dict[str, Any]]:
    """Rows of one filled sheet, checked; any problem is one GravityError naming the file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise GravityError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB; not a sheet")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise GravityError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise GravityError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise GravityError(f"{path}: not a readable CSV: {exc}") from None
    if not records:
        raise GravityError(f"{path}: empty file")
    header = [h.strip() for h in records[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise GravityError(f"{path}: missing column(s) {', '.join(missing)}")
    rows = []
    for line, values in enumerate(records[1:], start=2):
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise GravityError(
                f"{path}:{line}: {len(values)} columns, the header has {len(header)} "
                "(an unquoted comma?)"
            )
        row = dict(zip(header, values))
        rows.append(_check_row(path, line, row, key))
    if not rows:
        raise GravityError(f"{path}: no filled rows")
    return rows


def _int_field(path: Path, line: int, row: dict[str, str], name: str, low: int, high: int) -> int:
    value = row[name].strip()
    if not re.fullmatch(r"[0-9]{1,3}", value):
        raise GravityError(f"{path}:{line}: {name}: {value[:20]!r} is not a whole number")
    number = int(value)
    if not low <= number <= high:
        raise GravityError(f"{path}:{line}: {name}: {number} is outside {low}-{high}")
    return number


def _check_row(
    path: Path, line: int, row: dict[str, str], key: dict[str, dict[str, list[str]]]
) -> dict[str, Any]:
    case_id, label = row["case_id"], row["label"]
    if case_id not in key or label not in key[case_id]:
        raise GravityError(
            f"{path}:{line}: case_id/label: unknown {case_id[:60]!r} / {label[:10]!r}"
        )
    rater = row["rater_id"].strip()
    if not RATER.fullmatch(rater):
        raise GravityError(
            f"{path}:{line}: rater_id: {rater[:40]!r} is not 1-40 letters, digits, - or _"
        )
    interest = None
    if row.get("interest", "").strip():
        interest = _int_field(path, line, row, "interest", 1, 5)
    return {
        "case_id": case_id,
        "reader_id": row["reader_id"],
        "country": row["country"],
        "label": label,
        "rank": _int_field(path, line, row, "rank", 1, len(key[case_id])),
        "interest": interest,
        "rater_id": rater,
        "file": str(path),
    }


def read_rankings(paths: list[Path], key: dict[str, dict[str, list[str]]]) -> list[dict[str, Any]]:
    """Every row of every filled sheet, validated: each (rater, case) ranks every label once,
    and no rater answers a case twice (in one file or across files)."""
    rows = [row for path in paths for row in _parse_file(path, key)]
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by[(row["rater_id"], row["case_id"])].append(row)
    for (rater, case_id), answers in sorted(by.items()):
        labels = sorted(key[case_id])
        got_labels = sorted(a["label"] for a in answers)
        files = sorted({a["file"] for a in answers})
        if got_labels != labels:
            raise GravityError(
                f"{', '.join(files)}: rater {rater}, case {case_id}: labels {got_labels} should "
                f"be {labels}, each once"
            )
        ranks = sorted(a["rank"] for a in answers)
        if ranks != list(range(1, len(labels) + 1)):
            raise GravityError(
                f"{', '.join(files)}: rater {rater}, case {case_id}: ranks must be "
                f"1..{len(labels)}, each once, for labels {labels}; got {ranks}"
            )
    return rows


def judgments_from_rows(
    rows: list[dict[str, Any]], key: dict[str, dict[str, list[str]]]
) -> list[Judgment]:
    """One ranking per (rater, case), in system space; identical descriptions share a rank."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by[(row["rater_id"], row["case_id"])].append(row)
    judgments = []
    for (rater, case_id), answers in sorted(by.items()):
        ranks = {s: a["rank"] for a in answers for s in key[case_id][a["label"]]}
        interest = {
            s: float(a["interest"])
            for a in answers
            if a["interest"] is not None
            for s in key[case_id][a["label"]]
        }
        judgments.append(
            Judgment(
                case_id, answers[0]["reader_id"], answers[0]["country"], ranks, interest, rater
            )
        )
    return judgments


def rater_agreement(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Krippendorff's alpha (ordinal) of the ranks raters gave the same descriptions."""
    raters = sorted({r["rater_id"] for r in rows})
    units = sorted({(r["case_id"], r["label"]) for r in rows})
    shared = defaultdict(set)
    for r in rows:
        shared[(r["case_id"], r["label"])].add(r["rater_id"])
    if len(raters) < 2 or not any(len(v) >= 2 for v in shared.values()):
        reason = "one rater" if len(raters) < 2 else "no description was ranked by two raters"
        return {"raters": len(raters), "alpha": None, "reason": reason}
    import numpy as np

    from gravity.evaluate.metrics import _require

    krippendorff = _require("krippendorff", "krippendorff", "inter-rater agreement")

    index = {u: i for i, u in enumerate(units)}
    data = np.full((len(raters), len(units)), np.nan)
    for r in rows:
        data[raters.index(r["rater_id"]), index[(r["case_id"], r["label"])]] = r["rank"]
    try:
        alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))
    except ValueError as exc:  # e.g. every rank identical: agreement is undefined
        return {"raters": len(raters), "alpha": None, "reason": str(exc)}
    return {
        "raters": len(raters),
        "alpha": alpha,
        "level": "ordinal",
        "units": sum(len(v) >= 2 for v in shared.values()),
    }


def _human_metrics(
    rows: list[dict[str, Any]],
    key: dict[str, dict[str, list[str]]],
    cases: list[dict[str, Any]],
    focus: str | None,
    settings: BootstrapSettings,
) -> dict[str, Any]:
    """The evaluation's metrics over the judged cases, from the raters' rankings."""
    meta = {c["case_id"]: (c["reader_id"], c["country"]) for c in cases}
    judged = {r["case_id"] for r in rows}
    items = {c["case_id"]: c["book_id"] for c in cases if c.get("book_id")}
    outcomes = outcomes_from_judgments(judgments_from_rows(rows, key))
    systems = sorted(cases[0]["descriptions"])
    judged_meta = {c: m for c, m in meta.items() if c in judged}
    return compute_metrics(outcomes, judged_meta, systems, focus or "", {}, settings, items)


def _from_cases(rows: list[dict[str, Any]], meta: dict[str, tuple[str, str]]) -> list[dict]:
    """Rows with the reader and country of their case in the evaluation: a sheet's own
    reader_id and country columns are not trusted (a fill-down would merge readers)."""
    if any(r["case_id"] not in meta for r in rows):
        missing = sorted({r["case_id"] for r in rows if r["case_id"] not in meta})
        raise GravityError(f"cases {missing[:5]} are in the sheets but not in the evaluation")
    return [
        {**r, "reader_id": meta[r["case_id"]][0], "country": meta[r["case_id"]][1]} for r in rows
    ]


def _recorded_focus(eval_dir: Path) -> str | None:
    """The focus system the evaluation recorded in its metrics.json, if any."""
    path = eval_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        focus = json.loads(path.read_text(encoding="utf-8")).get("focus")
    except (json.JSONDecodeError, AttributeError):
        return None
    return focus if isinstance(focus, str) else None


def _rater_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    fields = ["case_id", "reader_id", "country", "label", "rank", "interest", "rater_id"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(
        {**r, "interest": "" if r["interest"] is None else r["interest"]} for r in rows
    )
    return buffer.getvalue()


def import_rankings(
    eval_dir: str | Path,
    sheets: str | Path,
    filled: list[Path],
    out: str | Path,
    n_boot: int = 2000,
    seed: int = 0,
    min_readers: int = 5,
    focus: str | None = None,
) -> dict[str, Any]:
    """Metrics from human rankings: ``human-metrics.json`` and ``report.md`` in ``out``.

    Each rater's rows are kept in ``out/ratings/<rater>.csv``; an import replaces the files of
    the raters it brings and keeps every other rater's. Everything is validated before anything
    is written. A row's reader and country are the evaluation's for its case, whatever the
    sheet's columns say. ``focus``: the system whose paired differences are reported; default
    the evaluation's (its metrics.json), else none.
    """
    eval_dir, sheets, out = Path(eval_dir), Path(sheets), Path(out)
    key_path = sheets / "key.json"
    if not key_path.is_file():
        raise GravityError(f"{sheets}: no key.json; pass the folder `gravity human export` wrote")
    key = json.loads(key_path.read_text(encoding="utf-8"))
    cases = _read_cases(eval_dir)
    meta = {c["case_id"]: (c["reader_id"], c["country"]) for c in cases}
    new_rows = _from_cases(read_rankings(filled, key), meta)
    new_raters = {r["rater_id"] for r in new_rows}
    kept = [p for p in sorted((out / "ratings").glob("*.csv")) if p.stem not in new_raters]
    rows = _from_cases(read_rankings(kept, key), meta) + new_rows if kept else new_rows
    settings = BootstrapSettings(n_boot, seed=seed, min_readers=min_readers)
    metrics = _human_metrics(rows, key, cases, focus or _recorded_focus(eval_dir), settings)
    metrics["human"] = {
        "raters": sorted({r["rater_id"] for r in rows}),
        "rankings": len({(r["rater_id"], r["case_id"]) for r in rows}),
        "cases": len({r["case_id"] for r in rows}),
        "files": [str(p) for p in filled],
        "agreement": rater_agreement(rows),
    }
    by_rater: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in new_rows:
        by_rater[r["rater_id"]].append(r)
    for rater, rater_rows in sorted(by_rater.items()):
        atomic_write_text(out / "ratings" / f"{rater}.csv", _rater_csv(rater_rows))
    from gravity.evaluate.report import _json_safe, human_markdown

    atomic_write_text(out / "human-metrics.json", json.dumps(_json_safe(metrics), indent=2) + "\n")
    atomic_write_text(out / "report.md", human_markdown(metrics))
    return metrics
