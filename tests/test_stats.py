"""Statistics of the evaluation pinned against hand-computed cases (n=0, 1, 2, 3, ties)."""

from __future__ import annotations

import pytest

from gravity.evaluate.copying import copy_rate
from gravity.evaluate.length import length_controlled
from gravity.evaluate.metrics import (
    BootstrapSettings,
    Judgment,
    agreement_with_alignment,
    bootstrap_mean,
    compute_metrics,
    outcome_from_pairs,
    outcomes_from_judgments,
)

PCT = BootstrapSettings(resamples=4000, method="percentile", seed=3, min_readers=2)


def test_bootstrap_small_n_by_hand():
    assert bootstrap_mean([], PCT)["status"] == "no_data"
    one = bootstrap_mean([0.7], PCT)
    assert one["value"] == 0.7 and one["ci"] is None and one["status"] == "too_few"
    # n=2, values 0 and 1: resample means are 0, 0.5, 1 with probability 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% percentiles are 0 and 1.
    two = bootstrap_mean([0.0, 1.0], PCT)
    assert two["value"] == 0.5 and two["ci"] == [0.0, 1.0] and two["status"] == "ok"
    # n=3, values 0, 0, 1: P(mean 0) = 8/27 and P(mean 1) = 1/27, both above 2.5%.
    three = bootstrap_mean([0.0, 0.0, 1.0], PCT)
    assert three["value"] == pytest.approx(1 / 3) and three["ci"] == [0.0, 1.0]
    # Ties: identical values have no spread.
    same = bootstrap_mean([0.5, 0.5, 0.5], PCT)
    assert same["ci"] == [0.5, 0.5] and same["method"] == "constant"


def test_bca_is_seeded_brackets_the_mean_and_says_its_method():
    values = [0.1, 0.4, 0.35, 0.8, 0.5, 0.45, 0.2, 0.9, 0.6, 0.3]
    settings = BootstrapSettings(resamples=2000, method="BCa", seed=1, min_readers=5)
    a = bootstrap_mean(values, settings)
    assert a == bootstrap_mean(values, settings)
    assert a["method"] == "BCa" and a["ci"][0] < a["value"] < a["ci"][1]
    assert a["ci"] != bootstrap_mean(values, BootstrapSettings(2000, "BCa", seed=2))["ci"]
    assert bootstrap_mean(values[:4], settings)["status"] == "too_few"


def test_copeland_top1_splits_ties():
    o = outcome_from_pairs("c", "r", "US", {("X", "Y"): 1.0, ("X", "Z"): 0.5, ("Y", "Z"): 0.5})
    assert o.wins[("Y", "X")] == 0.0 and o.wins[("Z", "X")] == 0.5
    assert o.top1 == {"X": 1.0, "Y": 0.0, "Z": 0.0}  # points X 1.5, Y 0.5, Z 1.0
    tied = outcome_from_pairs("c", "r", "US", {("X", "Y"): 0.5, ("X", "Z"): 0.5, ("Y", "Z"): 0.5})
    assert tied.top1 == pytest.approx({"X": 1 / 3, "Y": 1 / 3, "Z": 1 / 3})
    cycle = outcome_from_pairs("c", "r", "US", {("X", "Y"): 1.0, ("Y", "Z"): 1.0, ("X", "Z"): 0.0})
    assert cycle.top1 == pytest.approx({"X": 1 / 3, "Y": 1 / 3, "Z": 1 / 3})


def test_raters_combine_by_mean_rank():
    js = [
        Judgment("c", "r", "US", {"X": 1, "Y": 2, "Z": 3}, {"X": 4.0}, rater="ana"),
        Judgment("c", "r", "US", {"Y": 1, "X": 2, "Z": 3}, {"X": 2.0, "Y": 5.0}, rater="ben"),
    ]
    (o,) = outcomes_from_judgments(js)
    assert o.wins[("X", "Y")] == 0.5 and o.wins[("X", "Z")] == 1.0
    assert o.top1 == {"X": 0.5, "Y": 0.5, "Z": 0.0}
    assert o.interest == {"X": 3.0, "Y": 5.0}


def _o(case, reader, pairs, interest=None, country="US"):
    return outcome_from_pairs(case, reader, country, pairs, interest)


def test_paired_differences_per_reader_by_hand():
    """Reader r1 has two cases, r2 one; readers weigh equally."""
    outcomes = [
        _o("r1:a", "r1", {("gravity", "base"): 1.0}, {"gravity": 5.0, "base": 3.0}),
        _o("r1:b", "r1", {("gravity", "base"): 0.5}, {"gravity": 4.0, "base": 4.0}),
        _o("r2:a", "r2", {("gravity", "base"): 0.0}, {"gravity": 2.0, "base": 3.0}, "BR"),
    ]
    meta = {"r1:a": ("r1", "US"), "r1:b": ("r1", "US"), "r2:a": ("r2", "BR")}
    align = {"r1:a": {"gravity": 0.3, "base": 0.1}, "r1:b": {"gravity": 0.1, "base": 0.1}}
    align["r2:a"] = {"gravity": 0.0, "base": None}
    settings = BootstrapSettings(resamples=1000, method="percentile", min_readers=2)
    m = compute_metrics(
        outcomes, meta, ["base", "gravity"], "gravity", {"alignment": align}, settings
    )
    overall = m["overall"]
    # Top-1 per reader: r1 gravity (1 + 0.5) / 2 = 0.75, r2 0.0 -> mean 0.375.
    assert overall["systems"]["gravity"]["top1"]["value"] == pytest.approx(0.375)
    # Preference gain per reader: r1 (0.75 - 0.5) * 100 = 25, r2 -50 -> mean -12.5.
    gain = overall["paired"]["base"]["preference_gain"]
    assert gain["value"] == pytest.approx(-12.5) and gain["n"] == 2
    assert overall["preference_gain"]["base"]["gravity"]["value"] == pytest.approx(12.5)
    # Top-1 difference per reader: r1 0.75 - 0.25 = 0.5, r2 0 - 1 = -1 -> -0.25.
    assert overall["paired"]["base"]["top1"]["value"] == pytest.approx(-0.25)
    # Interest difference: r1 mean(2, 0) = 1, r2 -1 -> 0.
    assert overall["paired"]["base"]["interest"]["value"] == pytest.approx(0.0)
    # Alignment: r2 has no base score, so only r1 pairs: 0.2 - 0.1 = 0.1; one reader is too few.
    a = overall["paired"]["base"]["alignment"]
    assert a["value"] == pytest.approx(0.1) and a["n"] == 1 and a["status"] == "too_few"
    assert m["by_country"]["BR"]["paired"]["base"]["preference_gain"]["value"] == -50.0
    assert m["bootstrap"]["method"] == "percentile" and m["bootstrap"]["resamples"] == 1000


def test_agreement_with_alignment_by_hand():
    outcomes = [
        _o("c1", "r", {("X", "Y"): 1.0, ("X", "Z"): 0.5, ("Y", "Z"): 0.0}),
    ]
    align = {"c1": {"X": 0.2, "Y": 0.1, "Z": 0.3}}
    # X>Y agrees with 0.2>0.1; X~Z is a tie (left out); Z>Y agrees with 0.3>0.1.
    assert agreement_with_alignment(outcomes, align) == {"pairs": 2, "agreement": 1.0, "p": 0.5}
    align = {"c1": {"X": 0.0, "Y": 0.1, "Z": None}}
    assert agreement_with_alignment(outcomes, align) == {"pairs": 1, "agreement": 0.0, "p": 1.0}
    # Averaged probabilities count by the side they lean to: X over Y at 0.6 agrees with
    # 0.2 > 0.1, Y over Z at 0.45 (Z leans ahead) agrees with 0.3 > 0.1, X over Z at 0.7
    # disagrees with 0.2 < 0.3.
    soft = [_o("c1", "r", {("X", "Y"): 0.6, ("X", "Z"): 0.7, ("Y", "Z"): 0.45})]
    align = {"c1": {"X": 0.2, "Y": 0.1, "Z": 0.3}}
    got = agreement_with_alignment(soft, align)
    assert got == {"pairs": 3, "agreement": pytest.approx(2 / 3), "p": 1.0}


def test_copy_rate_is_order_free_token_precision():
    profile = "reads history and values tradition and family"
    assert copy_rate(profile, profile) == 1.0
    assert copy_rate("a bright spaceship adventure", profile) == 0.0
    # "values", "tradition" found = 2 of the description's 4 words.
    assert copy_rate("values tradition over spaceships", profile) == 0.5
    # Word order plays no part (ROUGE-L gave 2/3 here).
    assert copy_rate("family and tradition", profile) == 1.0
    # Clipped: the profile has "and" twice, the description three times -> 2 of 3.
    assert copy_rate("and and and", profile) == pytest.approx(2 / 3)
    assert copy_rate("", profile) is None and copy_rate("Hello", "") is None


def test_copy_rate_reads_scripts_without_spaces():
    """Japanese: character bigrams. The description's 9 bigrams (日本 本の の小 小説 説が が好
    好き きで です) share 4 with the profile's (日本 本の の小 小説 説を を読 読む): 4/9; ROUGE-L
    kept no token of either and scored 0.0."""
    assert copy_rate("日本の小説が好きです", "日本の小説を読む") == pytest.approx(4 / 9)
    assert copy_rate("東京", "Reader from 東京, Japan") == 1.0
    assert copy_rate("ＦＡＭＩＬＹ", "family") == 1.0  # NFKC folds full-width letters


def test_single_cases_that_echo_the_profile_are_flagged():
    """One gravity text repeats the profile as a list; it is named in metrics.json and the
    Reading, the ordinary texts are not."""
    from gravity.evaluate.report import reading

    profile = "Reader: 41-year-old nurse from Japan, reads in ja. Values: tradition, security."
    meta = {f"r{k}:a": (f"r{k}", "JP") for k in range(5)}
    copy = {c: {"base": copy_rate("A quiet novel about a river town.", profile)} for c in meta}
    for c in meta:
        copy[c]["gravity"] = copy_rate("A novel of duty and tradition.", profile)
    copy["r2:a"]["gravity"] = copy_rate(
        "Readers: - 41-year-old nurse from Japan - tradition", profile
    )
    outcomes = [_o(c, r, {("gravity", "base"): 0.5}) for c, (r, _) in meta.items()]
    m = compute_metrics(
        outcomes, meta, ["base", "gravity"], "gravity", {"copy_rate": copy}, BootstrapSettings()
    )
    assert [(e["case_id"], e["system"]) for e in m["echoes"]] == [("r2:a", "gravity")]
    judge = {"parse_rate": None, "agreement_with_alignment": {"pairs": 0, "agreement": None}}
    judge["self_preference_systems"] = []
    text = "\n".join(reading({**m, "judge": judge, "length": {"pairs": 0}}))
    assert "1 description(s) echo the profile" in text and "`gravity` on `r2:a`" in text


def _length_cases(n, seed, long_range, short_range, p_win):
    """Cases of systems `long` and `short` with word counts drawn from the ranges; the judge's
    verdict for `long` is a coin with P(win) = p_win(long's words, short's words)."""
    import random

    rng = random.Random(seed)
    outcomes, words = [], {}
    for i in range(n):
        long, short = rng.randint(*long_range), rng.randint(*short_range)
        words[f"c{i}"] = {"long": long, "short": short}
        win = 1.0 if rng.random() < p_win(long, short) else 0.0
        outcomes.append(_o(f"c{i}", f"r{i % 40}", {("long", "short"): win}))
    return outcomes, words


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_length_controlled_win_rate_removes_a_length_advantage(seed):
    """The judge gives the longer text P = 0.85 whatever the systems; `long` writes longer most
    of the time, so it wins most pairs, but at equal length the fit predicts 50% (inside its CI)."""

    def p_win(a, b):
        return 0.85 if a > b else 0.15 if a < b else 0.5

    outcomes, words = _length_cases(400, seed, (40, 140), (20, 100), p_win)
    lc = length_controlled(outcomes, words, ["long", "short"])
    assert lc["status"] == "ok" and lc["raw"]["long"]["short"] > 0.6
    lo, hi = lc["lc_ci"]["long"]["short"]
    assert lo < 0.5 < hi and abs(lc["lc"]["long"]["short"] - 0.5) < 0.1 and lc["gamma"] > 1
    assert lc["lc"]["short"]["long"] == pytest.approx(1 - lc["lc"]["long"]["short"])
    assert lc["confounded"] == []


def test_length_controlled_win_rate_keeps_a_better_system_that_is_mostly_longer():
    """`long` is better (wins 80% whatever the lengths) and writes longer in about 88% of
    cases. The fit keeps its advantage, and its CI holds the true 80% (the penalised fit gave
    82% here, with no CI)."""
    outcomes, words = _length_cases(600, 7, (60, 140), (20, 100), lambda a, b: 0.8)
    lc = length_controlled(outcomes, words, ["long", "short"])
    assert lc["longer"]["long"]["short"] == pytest.approx(0.88, abs=0.05)
    lo, hi = lc["lc_ci"]["long"]["short"]
    assert lo < 0.8 < hi and lo > 0.6


def test_length_and_system_confounded_is_said_not_estimated():
    """`long` always writes more (by 1-100 words) and is better: length and system cannot be
    told apart, so there is no length-controlled rate (the penalised fit said about 50%)."""
    outcomes, words = _length_cases(400, 3, (101, 140), (20, 100), lambda a, b: 0.8)
    lc = length_controlled(outcomes, words, ["long", "short"])
    assert lc["longer"]["long"]["short"] == 1.0 and lc["confounded"] == [["long", "short"]]
    assert lc["status"] == "not_estimable" and "confounded" in lc["reason"]
    assert lc["lc"] == {} and lc["raw"]["long"]["short"] == pytest.approx(0.8, abs=0.05)


def test_length_deciding_every_verdict_is_said_not_estimated():
    """A judge that always prefers the longer text: length separates the verdicts, the
    unpenalised fit has no finite estimate, and the result says so."""

    def p_win(a, b):
        return 1.0 if a > b else 0.0

    outcomes, words = _length_cases(400, 0, (40, 140), (20, 100), p_win)
    outcomes = [o for o in outcomes if words[o.case_id]["long"] != words[o.case_id]["short"]]
    lc = length_controlled(outcomes, words, ["long", "short"])
    assert lc["status"] == "not_estimable" and "separated" in lc["reason"]


def test_length_controlled_win_rate_keeps_a_quality_advantage():
    """A judge that prefers `good` 80% of the time whatever the lengths: the length-controlled
    win rate keeps it (lengths are independent of the verdicts)."""
    import random

    rng = random.Random(5)
    outcomes, words = [], {}
    for i in range(400):
        words[f"c{i}"] = {"good": rng.randint(20, 100), "plain": rng.randint(20, 100)}
        win = 1.0 if rng.random() < 0.8 else 0.0
        outcomes.append(_o(f"c{i}", f"r{i}", {("good", "plain"): win}))
    lc = length_controlled(outcomes, words, ["good", "plain"])
    assert abs(lc["lc"]["good"]["plain"] - lc["raw"]["good"]["plain"]) < 0.05
    assert abs(lc["gamma"]) < 0.5


def test_top1_tie_survives_rounding_noise():
    """Averaged probabilities that tie up to rounding ((0.1 + 0.2) / 0.6 != 0.5 in floats) are
    a tie: both systems share Top-1."""
    from gravity.evaluate.metrics import outcome_from_pairs

    v = (0.1 + 0.2) / 0.6
    assert v != 0.5
    o = outcome_from_pairs("c", "r", "US", {("X", "Y"): v})
    assert o.top1 == {"X": 0.5, "Y": 0.5}
    o = outcome_from_pairs("c", "r", "US", {("X", "Y"): 0.51})
    assert o.top1 == {"X": 1.0, "Y": 0.0}


def test_paired_differences_pair_per_case_not_per_system():
    """Planted (issue 23): the focus system writes nothing on each reader's hard book (no
    interest rating, no alignment) and equals the baseline elsewhere. Paired per case, only the
    easy books count and the difference is exactly 0; pairing reader means of each system
    separately scored the focus on easy books only and gave +1.5 [1.5, 1.5] 'higher'."""
    outcomes, meta, align = [], {}, {}
    for k in range(6):
        r = f"r{k}"
        meta[f"{r}:easy"], meta[f"{r}:hard"] = (r, "US"), (r, "US")
        outcomes.append(
            _o(f"{r}:easy", r, {("gravity", "base"): 0.5}, {"gravity": 4.5, "base": 4.5})
        )
        outcomes.append(_o(f"{r}:hard", r, {("gravity", "base"): 0.5}, {"base": 1.5}))
        align[f"{r}:easy"] = {"gravity": 0.2, "base": 0.2}
        align[f"{r}:hard"] = {"gravity": None, "base": -0.1}
    settings = BootstrapSettings(resamples=500, min_readers=2)
    m = compute_metrics(
        outcomes, meta, ["base", "gravity"], "gravity", {"alignment": align}, settings
    )
    for metric in ("interest", "alignment"):
        est = m["overall"]["paired"]["base"][metric]
        assert est["value"] == pytest.approx(0.0), metric
        assert est["n"] == 6 and est["cases"] == 6, metric  # 6 readers, their 6 easy cases
        assert est["ci"][0] <= 0.0 <= est["ci"][1], metric


def _null_per_reader(kind: str, runs: int, n: int, rng):
    """Per-reader paired differences under the null. Two exchangeable systems make a paired
    difference symmetric about 0: normal, or a Top-1-like difference (each of a reader's two
    cases -1, 0 or +1 with probabilities 0.2, 0.6, 0.2; the reader's value is their mean)."""
    import numpy as np

    if kind == "normal":
        return rng.normal(0.0, 1.0, size=(runs, n))
    cases = rng.choice(np.array([-1.0, 0.0, 1.0]), p=[0.2, 0.6, 0.2], size=(runs, n, 2))
    return cases.mean(axis=2)


@pytest.mark.parametrize("kind", ["normal", "discrete"])
@pytest.mark.parametrize("n", [8, 16, 32])
def test_default_interval_holds_its_level_on_null_data(kind, n):
    """With the default settings a 95% CI excludes 0 on at most 6.5% of 20,000 simulated null
    evaluations (nominal 5%; the binomial SD of the rate is 0.15-0.17 points; the t interval's
    rate is 6.1% on the discrete data at 8 readers, 5.0-5.3% elsewhere). BCa, the former
    default, did so on 10-12% at 8 readers. The rate is counted with the vectorised interval
    ``bootstrap_mean`` uses, which is checked against ``bootstrap_mean`` on 100 of the runs."""
    import numpy as np

    from gravity.evaluate.intervals import t_intervals

    runs, settings = 20_000, BootstrapSettings()
    data = _null_per_reader(kind, runs, n, np.random.default_rng(100 + n))
    low, high, _ = t_intervals(data, settings.level)
    for k in range(100):
        est = bootstrap_mean(data[k], settings)
        assert est["ci"] == pytest.approx([low[k], high[k]], abs=1e-12)
    rate = float(((low > 0) | (high < 0)).mean())
    assert rate <= 0.065, rate


def test_top1_share_gets_a_wilson_interval_never_zero_width():
    """A system that wins no case: 0.0% with a Wilson interval over the 8 readers (upper bound
    z^2 / (n + z^2) = 3.8415 / 11.8415), not '0.0% [0.0%, 0.0%]'. With spread, the interval's
    n is p(1 - p) / SE^2 (by hand: readers 0, 1, 0.5, 0.5 -> SE^2 = (1/6) / 4, n = 6)."""
    from gravity.evaluate.intervals import proportion_ci
    from gravity.evaluate.report import cell

    outcomes, meta = [], {}
    for k in range(8):
        for book in ("a", "b"):
            case = f"r{k}:{book}"
            meta[case] = (f"r{k}", "US")
            outcomes.append(_o(case, f"r{k}", {("gravity", "base"): 0.0}))
    m = compute_metrics(outcomes, meta, ["base", "gravity"], "gravity", {}, BootstrapSettings())
    est = m["overall"]["systems"]["gravity"]["top1"]
    assert est["value"] == 0.0 and est["method"] == "Wilson"
    assert est["ci"] == pytest.approx([0.0, 3.841459 / 11.841459], abs=1e-6)
    assert cell(est, "top1") == "0.0% [0.0%, 32.4%]"
    z = 1.959964
    centre, half = 0.5, z / (1 + z * z / 6) * (0.25 / 6 + z * z / 144) ** 0.5
    got = proportion_ci([0.0, 1.0, 0.5, 0.5], cases=8, settings=BootstrapSettings(min_readers=2))
    assert got["ci"] == pytest.approx([centre - half, centre + half], abs=1e-6)


@pytest.mark.parametrize(
    ("agree", "pairs", "verdict"),
    [(14, 25, "not distinguishable from chance"), (5400, 10_000, "above chance")],
)
def test_judge_alignment_agreement_uses_a_binomial_test(agree, pairs, verdict):
    """56% of 25 pairs is chance (two-sided binomial p = 0.69), which the fixed 0.55 threshold
    called 'above chance'; 54% of 10,000 pairs is not chance (p < 1e-14), which it called 'no
    better than chance'."""
    from scipy.stats import binomtest

    from gravity.evaluate.report import reading

    outcomes = [
        _o(f"c{i}", f"r{i % 7}", {("X", "Y"): 1.0 if i < agree else 0.0}) for i in range(pairs)
    ]
    align = {f"c{i}": {"X": 0.2, "Y": 0.1} for i in range(pairs)}
    got = agreement_with_alignment(outcomes, align)
    assert got["pairs"] == pairs and got["agreement"] == pytest.approx(agree / pairs)
    assert got["p"] == pytest.approx(binomtest(agree, pairs).pvalue)
    judge = {"parse_rate": None, "agreement_with_alignment": got, "self_preference_systems": []}
    lines = reading({"judge": judge, "focus": None, "length": {"pairs": 0}})
    line = next(x for x in lines if "alignment score does" in x)
    assert verdict in line, line


def test_holm_by_hand():
    from gravity.evaluate.intervals import holm

    # Sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_higher_lower_labels_are_holm_corrected_and_raw_cis_stay():
    """gravity's alignment over base alone has a raw p of about 0.03 (its raw CI excludes 0);
    with the 8 other labelled overall comparisons (each p = 1) Holm gives 9 x p > 0.05, so the
    label is 'not distinguishable from 0' while the CI stays as computed."""
    from scipy.stats import ttest_1samp

    from gravity.evaluate.report import direction

    diffs = [0.1, 0.2, 0.05, 0.15, -0.05, 0.1, 0.0, 0.02]
    raw_p = ttest_1samp(diffs, 0.0).pvalue
    assert 0.05 / 9 < raw_p < 0.05
    systems = ["base", "gravity", "other", "third"]
    outcomes, meta, align = [], {}, {}
    for k, d in enumerate(diffs):
        case = f"r{k}:a"
        meta[case] = (f"r{k}", "US")
        ties = {(s, b): 0.5 for i, s in enumerate(systems) for b in systems[i + 1 :]}
        outcomes.append(_o(case, f"r{k}", ties))
        align[case] = {"base": 0.0, "gravity": d, "other": d, "third": d}
    m = compute_metrics(
        outcomes, meta, systems, "gravity", {"alignment": align}, BootstrapSettings()
    )
    est = m["overall"]["paired"]["base"]["alignment"]
    assert est["p"] == pytest.approx(raw_p) and est["ci"][0] > 0
    assert est["p_holm"] == pytest.approx(9 * raw_p)
    assert direction(est) == "not distinguishable from 0"
    assert m["overall"]["paired"]["other"]["alignment"]["p_holm"] == 1.0


def test_readers_sharing_books_get_a_two_way_interval_that_holds_its_level():
    """Null data where books matter (the difference is a book effect, SD 0.5, plus a reader
    effect, SD 0.5, plus noise, SD 1; new books every run): 32 readers with 2 of 12 books each.
    Readers alone exclude 0 on about 14% of runs; the default interval with the case -> book
    map does so on at most 6.5% of 10,000 (5.4% measured)."""
    import numpy as np

    from gravity.evaluate.intervals import crossed_mean

    rng = np.random.default_rng(11)
    settings, runs, readers, books = BootstrapSettings(), 10_000, 32, 12
    excluded = readers_only = 0
    for _ in range(runs):
        book = rng.normal(0, 0.5, books)
        reader = rng.normal(0, 0.5, readers)
        chosen = np.argsort(rng.random((readers, books)), axis=1)[:, :2]
        d = book[chosen] + reader[:, None] + rng.normal(0, 1, (readers, 2))
        rows = [(f"r{r}", f"b{chosen[r, k]}", d[r, k]) for r in range(readers) for k in range(2)]
        lo, hi = crossed_mean(rows, settings)["ci"]
        excluded += lo > 0 or hi < 0
        lo, hi = bootstrap_mean(d.mean(axis=1), settings)["ci"]
        readers_only += lo > 0 or hi < 0
    assert readers_only / runs > 0.1
    assert excluded / runs <= 0.065, excluded / runs


def test_paired_cells_use_the_book_map_when_readers_share_books():
    """Two books shared by 6 readers, a strong book effect: with the case -> book map the
    alignment difference's CI is the two-way one and wider than the readers-only one."""
    outcomes, meta, align, items = [], {}, {}, {}
    for k in range(6):
        for book, effect in (("a", 0.3), ("b", -0.2)):
            case = f"r{k}:{book}"
            meta[case], items[case] = (f"r{k}", "US"), book
            outcomes.append(_o(case, f"r{k}", {("gravity", "base"): 0.5}))
            align[case] = {"base": 0.0, "gravity": effect + 0.01 * ((k * 7) % 5)}
    args = (outcomes, meta, ["base", "gravity"], "gravity", {"alignment": align})
    plain = compute_metrics(*args, BootstrapSettings())["overall"]["paired"]["base"]["alignment"]
    two = compute_metrics(*args, BootstrapSettings(), items)["overall"]["paired"]["base"]
    assert plain["method"] == "t" and two["alignment"]["method"] == "two-way-t"
    assert two["alignment"]["value"] == pytest.approx(plain["value"])
    assert two["alignment"]["ci"][1] - two["alignment"]["ci"][0] > plain["ci"][1] - plain["ci"][0]


def test_report_says_when_length_and_system_are_confounded():
    from gravity.evaluate.report import reading

    outcomes, words = _length_cases(400, 3, (101, 140), (20, 100), lambda a, b: 0.8)
    length = length_controlled(outcomes, words, ["long", "short"])
    length["mean_words"] = {"long": 120.0, "short": 60.0}
    judge = {"parse_rate": None, "agreement_with_alignment": {"pairs": 0, "agreement": None}}
    judge["self_preference_systems"] = []
    text = "\n".join(
        reading({"judge": judge, "focus": "long", "length": length, "overall": {"paired": {}}})
    )
    assert "no length-controlled win rate: length and system are confounded" in text
    assert "Length and system are confounded for `long` vs `short`" in text


def test_evaluate_report_recomputes_from_stored_cases_and_verdicts(tmp_path):
    """`gravity evaluate report DIR --focus prompt` on the committed lever evaluation: no model
    is called, the judge's call statistics are kept, and prompt's alignment difference from
    base is the mean over readers of per-case differences, computed here from cases.jsonl."""
    import json
    import shutil
    import statistics
    from collections import defaultdict
    from pathlib import Path

    from typer.testing import CliRunner

    from gravity.cli import app

    src = Path(__file__).parent.parent / "docs/results/study-cpu/levers/test-chosen"
    folder = tmp_path / "eval"
    shutil.copytree(src, folder)
    old = json.loads((folder / "metrics.json").read_text())
    result = CliRunner().invoke(app, ["evaluate", "report", str(folder), "--focus", "prompt"])
    assert result.exit_code == 0, result.output
    m = json.loads((folder / "metrics.json").read_text())
    assert m["focus"] == "prompt" and m["judge"]["calls"] == old["judge"]["calls"]
    per = defaultdict(list)
    for line in (folder / "cases.jsonl").read_text().splitlines():
        case = json.loads(line)
        a, b = case["alignment"]["prompt"], case["alignment"]["base"]
        if a is not None and b is not None:
            per[case["reader_id"]].append(a - b)
    expected = statistics.fmean(statistics.fmean(v) for v in per.values())
    est = m["overall"]["paired"]["base"]["alignment"]
    assert est["value"] == pytest.approx(expected) and est["n"] == len(per)
    assert "## `prompt` against each baseline" in (folder / "report.md").read_text()
    bad = CliRunner().invoke(app, ["evaluate", "report", str(folder), "--focus", "nope"])
    assert bad.exit_code == 2 and "not a system" in bad.output
