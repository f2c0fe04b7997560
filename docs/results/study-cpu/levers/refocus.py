"""An evaluation's paired differences recomputed with another focus system, from its
``cases.jsonl`` and ``judgments.jsonl`` (no model is loaded). Prints alignment and preference
gain, focus minus each other system, overall and per country.

    python refocus.py EVAL_FOLDER SYSTEM
"""

import json
import sys
from pathlib import Path

from gravity.evaluate.metrics import BootstrapSettings, compute_metrics, outcome_from_pairs


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _figure(v: dict) -> str:
    if v.get("value") is None or not v.get("ci"):
        return f"{v.get('value')} ({v.get('status')})"
    return f"{v['value']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]"


def main(folder: str, focus: str) -> None:
    cases = _jsonl(Path(folder) / "cases.jsonl")
    judged = _jsonl(Path(folder) / "judgments.jsonl")
    meta = {c["case_id"]: (c["reader_id"], c["country"]) for c in cases}
    systems = list(cases[0]["descriptions"])
    values = {k: {c["case_id"]: c[k] for c in cases} for k in ("alignment", "copy_rate")}
    outcomes = [
        outcome_from_pairs(
            j["case_id"], *meta[j["case_id"]], {(s, b): v for s, b, v in j["pairs"]}, j["interest"]
        )
        for j in judged
    ]
    settings = BootstrapSettings(2000, "BCa", 0.95, 0, 5)
    metrics = compute_metrics(outcomes, meta, systems, focus, values, settings)
    for scope, block in [("overall", metrics["overall"]), *sorted(metrics["by_country"].items())]:
        for other, row in block["paired"].items():
            print(
                f"{scope:8s} {focus} - {other:14s} alignment {_figure(row['alignment'])}  "
                f"preference {_figure(row['preference_gain'])}"
            )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
