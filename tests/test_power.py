"""Power of paired comparisons: hand-computed cases, the inverse, and simulated data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gravity.evaluate.power import (
    detectable,
    power_lines,
    power_rows,
    readers_needed,
    sd_from_ci,
)


def test_detectable_effect_by_hand():
    # (t[.975, 31] + t[.80, 31]) * 0.029 / sqrt(32) = (2.0395 + 0.8530) * 0.029 / 5.6569
    assert detectable(0.029, 32) == pytest.approx(0.014829, abs=2e-6)
    # (t[.975, 7] + t[.80, 7]) * 0.029 / sqrt(8) = (2.3646 + 0.8960) * 0.029 / 2.8284
    assert detectable(0.029, 8) == pytest.approx(0.033431, abs=2e-6)
    assert detectable(0.029, 1) == math.inf


def test_readers_needed_is_the_first_n_that_detects_the_effect():
    n = readers_needed(0.006, 0.029)
    assert 150 < n < 250  # about 200 readers, as the CPU study's figures say
    assert detectable(0.029, n) <= 0.006 < detectable(0.029, n - 1)
    assert readers_needed(-0.006, 0.029) == n  # the sign does not matter
    assert readers_needed(0.0, 0.029) is None
    assert readers_needed(1e-9, 1.0, limit=1000) is None


@pytest.mark.parametrize("n", [8, 16, 32])
def test_simulated_power_matches_the_formula(n):
    """Paired differences with a true mean equal to the detectable effect are detected by a
    t test about 80% of the time; with a true mean of 0, about 5%."""
    rng = np.random.default_rng(n)
    runs = 4000
    effect = detectable(1.0, n)
    alt = rng.normal(effect, 1.0, size=(runs, n))
    null = rng.normal(0.0, 1.0, size=(runs, n))
    hit_alt = (stats.ttest_1samp(alt, 0.0, axis=1).pvalue < 0.05).mean()
    hit_null = (stats.ttest_1samp(null, 0.0, axis=1).pvalue < 0.05).mean()
    assert 0.76 <= hit_alt <= 0.84, hit_alt
    assert 0.035 <= hit_null <= 0.065, hit_null


def test_sd_from_a_t_interval_is_the_sample_sd():
    x = np.random.default_rng(0).normal(0.01, 0.03, size=20)
    lo, hi = stats.t.interval(0.95, 19, loc=x.mean(), scale=x.std(ddof=1) / math.sqrt(20))
    assert sd_from_ci((lo, hi), 20) == pytest.approx(x.std(ddof=1), rel=1e-9)
    assert sd_from_ci((lo, hi), 1) is None


def test_power_rows_from_a_metrics_file_by_hand():
    metrics = {
        "bootstrap": {"level": 0.95},
        "overall": {
            "paired": {
                "base": {
                    "alignment": {"value": 0.006, "ci": [-0.004, 0.016], "n": 32, "sd": 0.029},
                    "interest": {"value": 0.3, "ci": [0.1, 0.5], "n": 32},  # not a headline
                    "top1": {"value": 0.1, "ci": None, "n": 32},  # no SD to be had
                },
            }
        },
    }
    (row,) = power_rows(metrics)
    assert (row["baseline"], row["metric"], row["readers"]) == ("base", "alignment", 32)
    assert row["detectable"] == pytest.approx(0.014829, abs=2e-6)
    assert row["readers_needed"] == readers_needed(0.006, 0.029)
    (at200,) = power_rows(metrics, n=200)
    assert at200["detectable"] < 0.006 < row["detectable"]
    (line,) = power_lines([row], "gravity")
    assert line.startswith("gravity - base, alignment: smallest effect detectable at 32 readers")
    assert "80% power, two-sided 5%" in line and "+0.006 would need" in line


def test_power_rows_skip_cells_without_a_spread_and_read_two_way_intervals():
    x = np.random.default_rng(1).normal(0.0, 0.03, size=12)
    se = x.std(ddof=1) / math.sqrt(12)
    books = 4  # two-way interval: df = min(readers, books) - 1 = 3
    lo, hi = stats.t.interval(0.95, 3, loc=x.mean(), scale=se)
    cells = {
        "alignment": {
            "value": x.mean(),
            "ci": [lo, hi],
            "n": 12,
            "status": "ok",
            "method": "two-way-t",
            "books": books,
        },
        "top1": {"value": 0.0, "ci": [0.0, 0.0], "n": 12, "status": "ok", "method": "constant"},
        "preference_gain": {"value": 1.0, "ci": [float("nan"), 2.0], "n": 12, "status": "ok"},
    }
    (row,) = power_rows({"overall": {"paired": {"base": cells}}})
    assert row["sd"] == pytest.approx(x.std(ddof=1), rel=1e-9)  # read with df 3, not 11
    assert row["two_way"]
    (line,) = power_lines([row], "gravity")
    assert "Holm" in line and "readers share items" in line
    (none,) = power_rows({"overall": {"paired": {"base": cells}}}, n=0)
    assert none["detectable"] == math.inf  # no held-out readers: nothing detectable


def test_a_clipped_interval_gives_the_sd_of_the_computed_one():
    """A Top-1 difference's t interval cut at -1 (metrics.py) is narrower than computed: the SD
    is read from the computed interval, which the cell keeps."""
    from gravity.evaluate.intervals import BootstrapSettings, clip_ci, crossed_mean

    x = [-1.0, -1.0, 0.0, 1.0, -1.0, -0.5]  # per-reader Top-1 differences, wide spread
    rows = [(f"r{k}", f"r{k}", v) for k, v in enumerate(x)]
    est = crossed_mean(rows, BootstrapSettings(min_readers=2))
    cut = clip_ci(est, -1.0, 1.0)
    assert cut["clipped"] and cut["ci"][0] == -1.0 and cut["ci_uncut"] == est["ci"]
    (row,) = power_rows({"overall": {"paired": {"base": {"top1": cut}}}})
    assert row["sd"] == pytest.approx(float(np.std(x, ddof=1)), rel=1e-9)
