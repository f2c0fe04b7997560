"""The rule set before the lever runs: a lever is kept only if, on the validation readers, its
alignment beats the default gravity model with a 95% CI above zero; of those, the one with the
largest mean difference. Prints each lever's figures, then the chosen run (or ``none``).

    python choose.py VALIDATION/metrics.json g-default
"""

import json
import sys
from pathlib import Path


def main(metrics_path: str, default: str) -> str:
    metrics = json.loads(Path(metrics_path).read_text())
    if metrics["focus"] != default:
        raise SystemExit(f"{metrics_path}: focus is {metrics['focus']!r}, not {default!r}")
    paired = metrics["overall"]["paired"]  # paired[v][metric] = default - v
    best, best_value = "none", 0.0
    for name, row in sorted(paired.items()):
        align, pref = row["alignment"], row.get("preference_gain", {})
        if align.get("value") is None or not align.get("ci"):
            print(f"{name}: no alignment figure ({align.get('status')})")
            continue
        diff, low, high = -align["value"], -align["ci"][1], -align["ci"][0]
        gain = -pref["value"] if pref.get("value") is not None else None
        print(
            f"{name} minus {default}: alignment {diff:+.4f} [{low:+.4f}, {high:+.4f}]; "
            f"preference {gain}"
        )
        if name.startswith("g-") and low > 0 and diff > best_value:
            best, best_value = name, diff
    return best


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2]))
