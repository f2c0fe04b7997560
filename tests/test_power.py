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


def _crossed(rng, readers, books, per_reader=2, sd_reader=0.02, sd_book=0.01, sd_case=0.02):
    """Per-case differences of readers who each see ``per_reader`` of ``books`` shared books."""
    book_effect = rng.normal(0, sd_book, size=books)
    rows = []
    for r in range(readers):
        effect = rng.normal(0, sd_reader)
        for b in rng.choice(books, size=per_reader, replace=False):
            rows.append((f"r{r}", f"b{b}", effect + book_effect[b] + rng.normal(0, sd_case)))
    return rows


def test_two_way_projection_matches_simulated_spread_at_the_planned_size():
    """Components estimated at a small reference (32 readers, 12 books) project the standard
    error at the planned size (200 readers, 36 books); checked against the spread of the mean
    over simulated evaluations of that size. Readers alone would understate it."""
    from gravity.evaluate.intervals import variance_components

    rng = np.random.default_rng(7)
    projected, readers_only = [], []
    for _ in range(60):
        reader, book, _, _ = variance_components(_crossed(rng, 32, 12))
        projected.append(math.sqrt(reader / 200 + book / 36))
        readers_only.append(math.sqrt(reader / 200))
    means = []
    for _ in range(400):
        rows = _crossed(rng, 200, 36)
        per = {}
        for r, _, v in rows:
            per.setdefault(r, []).append(v)
        means.append(np.mean([np.mean(v) for v in per.values()]))
    empirical = float(np.std(means, ddof=1))
    assert np.mean(projected) == pytest.approx(empirical, rel=0.2)
    assert np.mean(readers_only) < 0.85 * empirical  # the book part matters here


def test_variance_components_add_up_to_the_two_way_variance_at_the_reference():
    from gravity.evaluate.intervals import _two_way_variance, variance_components

    rows = _crossed(np.random.default_rng(3), 32, 12, sd_book=0.03)
    reader, book, readers, books = variance_components(rows)
    per = {}
    for r, _, v in rows:
        per.setdefault(r, []).append(v)
    both, _ = _two_way_variance(rows, float(np.mean([np.mean(v) for v in per.values()])))
    assert (readers, books) == (32, 12)
    assert reader / 32 + book / 12 == pytest.approx(both, rel=1e-9)


def test_detectable_two_way_by_hand():
    from gravity.evaluate.power import detectable_two_way

    # se = sqrt(0.0004 / 200 + 0.0001 / 36); df = 35
    se = math.sqrt(0.0004 / 200 + 0.0001 / 36)
    want = (stats.t.ppf(0.975, 35) + stats.t.ppf(0.8, 35)) * se
    assert detectable_two_way(0.0004, 0.0001, 200, 36) == pytest.approx(want, rel=1e-12)
    assert detectable_two_way(0.0004, 0.0001, 200, 1) == math.inf


def test_power_lines_speak_the_tables_units():
    row = {
        "baseline": "base",
        "metric": "top1",
        "observed": -0.25,
        "sd": 0.5,
        "readers": 8,
        "alpha": 0.05,
        "power": 0.8,
        "detectable": 0.6,
        "readers_needed": 30,
    }
    (line,) = power_lines([row], "gravity")
    assert "detectable at 8 readers 60 points" in line and "observed -25 points" in line
    (gain,) = power_lines([{**row, "metric": "preference_gain", "observed": -1.5}], "gravity")
    assert "detectable at 8 readers 0.6 points" in gain and "-1.5 points" in gain


def test_a_two_way_cell_detects_at_its_own_degrees_of_freedom():
    """A two-way interval (readers sharing books) has min(readers, books) - 1 degrees of
    freedom: the SD backed out of it and the detectable effect at the run's own readers use the
    same df, so the detectable effect is the interval's own t quantiles times its SE, not a
    mix of df 35 and df 199. Projected to other reader counts, the books grow with them."""
    sd, n, books = 0.044, 200, 36
    half = stats.t.ppf(0.975, 35) * sd / math.sqrt(n)
    cell = {"value": 0.019, "ci": [0.019 - half, 0.019 + half], "n": n, "books": books}
    metrics = {"overall": {"paired": {"base": {"alignment": {**cell, "method": "two-way-t"}}}}}
    (row,) = power_rows(metrics)
    assert row["sd"] == pytest.approx(sd, rel=1e-9)
    # (t[.975, 35] + t[.80, 35]) * 0.044 / sqrt(200) = (2.0301 + 0.8520) * 0.044 / 14.142
    assert row["detectable"] == pytest.approx(0.008967, abs=2e-6)
    assert row["detectable"] > detectable(sd, n)  # df 199 would claim a smaller effect
    # at 400 readers the books are assumed to double: df min(400, 72) - 1 = 71
    (at_400,) = power_rows(metrics, n=400)
    want = (stats.t.ppf(0.975, 71) + stats.t.ppf(0.8, 71)) * sd / 20
    assert at_400["detectable"] == pytest.approx(want, rel=1e-9)
    need = at_400["readers_needed"]
    assert need == row["readers_needed"]
    per = books / n
    df = lambda k: min(k, round(k * per)) - 1  # noqa: E731
    assert detectable(sd, need, df=df(need)) <= 0.019 < detectable(sd, need - 1, df=df(need - 1))
