"""How much of the powered study's alignment gain goes with copying the profile.

    python docs/results/study-powered/copy_check.py     # reads case-scores.csv beside it

The report flags that gravity's alignment gain over base and prompt coincides with a higher copy
rate. This prints, for gravity minus each baseline, the paired alignment difference (mean over
readers, two-way reader x book t interval, as the report computes it):
- over all 400 cases;
- without the readers for whom gravity echoed the profile (copy rate >= 0.5 on a case);
- at equal copy rate: each case's difference less the slope of alignment difference on copy-rate
  difference (least squares over the cases) times its copy-rate difference. Copying the reader's
  genres is partly what personalising is, so this is a lower reading, not the right one; its
  interval ignores the slope's own uncertainty;
- on the cases where gravity copied no more than the baseline (a subset chosen by an outcome:
  biased towards 0, shown as the most pessimistic reading);
- the correlation of the two differences with and without the echoing readers;
- per country, gravity minus base: the estimate and the smallest difference that country's own
  50 readers could detect (80% power, two-sided 5%; two-way, from that country's reader and book
  variance, as ``gravity run --dry-run`` projects a plan).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from gravity.evaluate.intervals import BootstrapSettings, crossed_mean, variance_components
from gravity.evaluate.power import detectable_two_way

HERE = Path(__file__).resolve().parent


def estimate(rows: list[tuple[str, str, float]]) -> str:
    e = crossed_mean(rows, BootstrapSettings())
    low, high = e["ci"]
    return f"{e['value']:+.4f} [{low:+.4f}, {high:+.4f}] ({e['n']} readers, {len(rows)} cases)"


def main() -> None:
    with open(HERE / "case-scores.csv", newline="") as f:
        cases = list(csv.DictReader(f))
    echo = {c["reader_id"] for c in cases if float(c["copy_rate_gravity"]) >= 0.5}
    for other in ("base", "prompt"):
        d = [
            (
                c["reader_id"],
                c["item_id"],
                float(c["alignment_gravity"]) - float(c[f"alignment_{other}"]),
                float(c["copy_rate_gravity"]) - float(c[f"copy_rate_{other}"]),
            )
            for c in cases
        ]
        x, y = np.array([r[3] for r in d]), np.array([r[2] for r in d])
        slope, r = float(np.polyfit(x, y, 1)[0]), float(np.corrcoef(x, y)[0, 1])
        print(f"gravity - {other}, alignment")
        print("  all cases:                 ", estimate([r[:3] for r in d]))
        print(
            f"  without {len(echo)} echoing readers:",
            estimate([r[:3] for r in d if r[0] not in echo]),
        )
        print(
            f"  at equal copy rate:         {estimate([(a, b, v - slope * c) for a, b, v, c in d])}"
            f"; slope {slope:+.3f} per unit of copy rate, r = {r:.2f}"
        )
        print(f"  cases copying no more:      {estimate([r[:3] for r in d if r[3] <= 0])}")
        kept = [r for r in d if r[0] not in echo]
        r_kept = float(np.corrcoef([r[3] for r in kept], [r[2] for r in kept])[0, 1])
        print(f"  r without the echoing readers: {r_kept:.2f}")
    print("gravity - base, alignment, per country (detectable: that country's own readers)")
    for country in sorted({c["country"] for c in cases}):
        rows = [
            (
                c["reader_id"],
                c["item_id"],
                float(c["alignment_gravity"]) - float(c["alignment_base"]),
            )
            for c in cases
            if c["country"] == country
        ]
        reader_part, book_part, readers, books = variance_components(rows)
        seen = detectable_two_way(reader_part, book_part, readers, books)
        print(f"  {country}: {estimate(rows)}; detectable {seen:.4f} ({books} books)")


if __name__ == "__main__":
    main()
