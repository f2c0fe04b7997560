"""``gravity evaluate report EVAL_DIR``: metrics.json, report.md and the plots recomputed from
an evaluation's stored cases and verdicts, with today's statistics and any focus system.

No model is called: descriptions, alignment scores (embeddings), word counts and the judge's
pair values are read from ``cases.jsonl`` and ``judgments.jsonl``; the copy rate is recomputed
from the stored texts; the judge's call statistics and the held-out check are kept from the old
``metrics.json``; the config is the one the old ``report.md`` records.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gravity.errors import GravityError
from gravity.evaluate.config import EvalConfig
from gravity.evaluate.copying import copy_rate
from gravity.evaluate.intervals import BootstrapSettings
from gravity.evaluate.metrics import agreement_with_alignment, compute_metrics, outcome_from_pairs
from gravity.evaluate.report import write_report
from gravity.evaluate.runner import _length_metrics, add_controls_and_power
from gravity.renamed import upgrade_renamed


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise GravityError(f"{path.parent}: no {path.name}; is this a `gravity evaluate` folder?")
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    except json.JSONDecodeError as exc:
        raise GravityError(f"{path}: not JSON lines ({exc.msg}, line {exc.lineno})") from None


def stored_config(eval_dir: Path) -> EvalConfig:
    """The EvalConfig the folder's report.md records in its Config section."""
    import yaml
    from pydantic import ValidationError

    path = eval_dir / "report.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    match = re.search(r"^## Config\s*\n+```yaml\n(.*?)\n```", text, re.S | re.M)
    if not match:
        raise GravityError(f"{eval_dir}: no report.md with a Config section to recompute from")
    try:
        return EvalConfig.model_validate(upgrade_renamed(yaml.safe_load(match.group(1))))
    except (yaml.YAMLError, ValidationError) as exc:
        raise GravityError(f"{path}: its Config section is not a valid EvalConfig: {exc}") from None


def _overridden(
    cfg: EvalConfig, eval_dir: Path, focus: str | None, bootstrap_method: str | None
) -> EvalConfig:
    """The stored config with the focus system and CI method asked for, checked."""
    systems = [s.name for s in cfg.systems]
    if focus is not None:
        if focus not in systems:
            raise GravityError(f"--focus {focus}: not a system of {eval_dir}; valid: {systems}")
        cfg = cfg.model_copy(update={"focus": focus})
    if bootstrap_method is not None:
        if bootstrap_method not in ("t", "BCa", "percentile"):
            raise GravityError(f"--bootstrap-method {bootstrap_method}: valid: t, BCa, percentile")
        cfg = cfg.model_copy(update={"bootstrap_method": bootstrap_method})
    return cfg


def recompute(
    eval_dir: str | Path, focus: str | None = None, bootstrap_method: str | None = None
) -> dict[str, Any]:
    """Rewrite ``metrics.json``, ``report.md`` and the plots of ``eval_dir``; returns the
    metrics. ``focus``: the system whose paired differences are reported; ``bootstrap_method``:
    the CI method (default for both: the evaluation's config)."""
    eval_dir = Path(eval_dir)
    cases = _jsonl(eval_dir / "cases.jsonl")
    judged = _jsonl(eval_dir / "judgments.jsonl")
    old_path = eval_dir / "metrics.json"
    if not old_path.is_file():
        raise GravityError(f"{eval_dir}: no metrics.json (the judge's statistics live there)")
    old = json.loads(old_path.read_text(encoding="utf-8"))
    cfg = _overridden(stored_config(eval_dir), eval_dir, focus, bootstrap_method)
    systems = [s.name for s in cfg.systems]
    meta = {c["case_id"]: (c["reader_id"], c["country"]) for c in cases}
    # Records written before tasks (issue 22) name the item ``book_id``.
    items = {
        c["case_id"]: c.get("item_id") or c["book_id"]
        for c in cases
        if c.get("item_id") or c.get("book_id")
    }
    values = {
        "alignment": {c["case_id"]: c.get("alignment", {}) for c in cases},
        "copy_rate": {
            c["case_id"]: {
                s: copy_rate(t, c.get("profile_text", "")) for s, t in c["descriptions"].items()
            }
            for c in cases
        },
    }
    outcomes = [
        outcome_from_pairs(
            j["case_id"], *meta[j["case_id"]], {(s, b): v for s, b, v in j["pairs"]}, j["interest"]
        )
        for j in judged
        if j["case_id"] in meta
    ]
    settings = BootstrapSettings(
        cfg.bootstrap, cfg.bootstrap_method, 0.95, cfg.seed, cfg.min_readers
    )
    metrics = compute_metrics(outcomes, meta, systems, cfg.focus, values, settings, items)
    metrics["judge"] = {
        **old["judge"],
        "agreement_with_alignment": agreement_with_alignment(outcomes, values["alignment"]),
    }
    words = {c["case_id"]: c["words"] for c in cases}
    metrics["length"] = _length_metrics(outcomes, words, meta, systems)
    add_controls_and_power(metrics, cases, settings, (old.get("controls") or {}).get("judge_calls"))
    metrics["cases"] = len(cases)
    metrics["readers"] = len({c["reader_id"] for c in cases})
    metrics["leakage"] = old.get("leakage", {"checked_against": [], "notes": []})
    if "task" in old:
        metrics["task"] = old["task"]
    write_report(eval_dir, metrics, cfg)
    return metrics
