"""The intent graph's ranking and its measurement: the path term on a planted graph where only
intents carry the signal (and its ablations), the bootstrap over users against hand-computed
cases and simulated null data, the split rules (temporal, relevance threshold, head ties), the
tuning on validation, item cold start."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gravity.intents.config import BuildConfig, EvalConfig, ScorerConfig, TuningGrid
from gravity.intents.evaluate import evaluate, head_items, holdout, table_lines
from gravity.intents.graph import Graph, assemble
from gravity.intents.stats import bootstrap_ci, paired_difference

GROUPS = ["group a", "group b", "group c", "group d"]
SCORER = ScorerConfig(dim=16, epochs=30, batch_size=64, lr=0.05)


def planted(seed: int = 0, users_per: int = 10, warm: int = 6, sparse: int = 6):
    """Four taste groups, one intent each. A user rates every 'warm' item of their group; each
    'sparse' item has one training rating, from a random user of any group (noise), and serves
    its group's intent. Each user's held-out item is a sparse item of their group: the ratings
    say nothing about it, the user -> intent -> item path says everything."""
    rng = np.random.default_rng(seed)
    ratings: dict[tuple[str, str], float] = {}
    heldout: dict[tuple[str, str], float | None] = {}
    item_intents: dict[str, list[int]] = {}
    warm_items = {g: [f"w{g}-{j}" for j in range(warm)] for g in range(4)}
    sparse_items = {g: [f"s{g}-{j}" for j in range(sparse)] for g in range(4)}
    for g in range(4):
        for item in warm_items[g] + sparse_items[g]:
            item_intents[item] = [g]
    users = [f"u{g}-{j}" for g in range(4) for j in range(users_per)]
    for g in range(4):
        for item in sparse_items[g]:
            ratings[(users[int(rng.integers(len(users)))], item)] = 1.0
    for user in users:
        g = int(user[1])
        ratings |= {(user, item): 1.0 for item in warm_items[g]}
        unseen = [i for i in sparse_items[g] if (user, i) not in ratings]
        heldout[(user, str(rng.choice(unseen)))] = None
    return ratings, heldout, item_intents


def planted_graph(seed: int = 0, scorer: ScorerConfig = SCORER, cold: int = 0, densify_k: int = 10):
    """The planted graph (scorer arrays left empty: ``evaluate`` trains its own); with
    ``cold``, that many more items per group that nobody rated, serving their group's intent;
    ``densify_k``: the graph's ``shares_intent`` edges per item."""
    ratings, heldout, item_intents = planted(seed)
    extra = [f"c{g}-{j}" for g in range(4) for j in range(cold)]
    item_intents |= {i: [int(i[1])] for i in extra}
    cfg = BuildConfig(scorer=scorer, densify_k=densify_k)
    nodes, edges, counts = assemble(ratings, Counter(), item_intents, GROUPS, {}, cfg, None, extra)
    manifest = {"version": 1, "counts": counts, "config": cfg.model_dump(mode="json")}
    return Graph(nodes, edges, manifest, {}), heldout


ONE_POINT = TuningGrid(
    scorer=[{}], itemknn=[{"K": 10}], als=[{"factors": 8}], bpr=[{"factors": 8}], lightgcn=[{}]
)


def _cfg(**kw) -> EvalConfig:
    base = {"k": 5, "grid": ONE_POINT, "bootstrap": 200, "threads": 1}
    return EvalConfig(**(base | kw))


# ---------------------------------------------------------------- the path term


def test_the_path_term_carries_what_the_embeddings_cannot() -> None:
    """A sparse item's embedding is placed by its one serves edge and its one rating, from a
    random user (noise): without ``shares_intent`` densification the embeddings cannot tell
    its audience (at 8 dimensions), while the path term reads the item's intents from the graph
    when it scores.
    ``intents_no_path`` (the same graph, the path term off) isolates the path term: the test
    fails when the path term is switched off. (With densification, each sparse item is tied to
    its group's items by ten more edges and the embeddings alone find the audience: there the
    path term adds nothing measurable, which is why this graph has none.)"""
    graph, heldout = planted_graph(scorer=SCORER.model_copy(update={"dim": 8}), densify_k=0)
    systems = ["intents", "intents_no_path", "intents_shuffled", "translation", "popularity"]
    report = evaluate(graph, heldout, _cfg(systems=systems), progress=False)
    hr = {s: report["metrics"][s]["overall"]["hr"] for s in systems}
    # Each user's 5 unrated sparse items of their group (the held-out one among them) fit in a
    # top 5 only through the intents; 42 candidates otherwise: a random top 5 hits 5/42.
    assert hr["intents"] >= 0.7
    assert hr["translation"] <= 0.35 and hr["intents"] - hr["translation"] >= 0.4
    # The path term itself: the same graph without it falls short (0.725 against 0.525 when
    # written; 0.2 to 0.375 apart over planted seeds 0-2).
    assert hr["intents"] - hr["intents_no_path"] >= 0.15
    no_path = report["paired"]["overall"]["intents_no_path"]["recall"]
    assert no_path["ci"][0] > 0
    # Permuting the items' intents takes the gain away: not merely more parameters.
    assert hr["intents_shuffled"] <= hr["translation"] + 0.1
    diff = report["paired"]["overall"]["translation"]["recall"]
    assert diff["ci"][0] > 0 and diff["p"] < 0.05
    assert report["paired"]["overall"]["intents_shuffled"]["ndcg"]["ci"][0] > 0
    # Holm over the comparisons of one slice and metric: adjusted p never below the raw one,
    # the strong differences still stand, and the table shows both.
    ests = [e for o in report["paired"].values() for m in o.values() for e in m.values()]
    assert all(e["p_holm"] >= e["p"] for e in ests if e["p"] is not None)
    assert diff["holm_significant"] and diff["p_holm"] <= 0.05
    lines = table_lines(report)
    assert any("p Holm" in line for line in lines)
    assert any(line.startswith("| overall | translation |") and " *" in line for line in lines)


def test_shuffled_intents_keep_the_degrees_but_not_which_items_have_intents() -> None:
    from gravity.intents.systems import Parts, variant_intents

    items = [f"i{j}" for j in range(10)]
    real = {"i0": [0, 1], "i1": [1], "i2": [2], "i3": [0, 1, 2]}
    parts = Parts(items, items, {}, Counter(), real, ["a", "b", "c"], {})
    degree_counts = Counter(len(v) for v in real.values())
    per_intent = Counter(c for v in real.values() for c in v)
    ever_with_intents: set[str] = set()
    for seed in range(40):
        shuffled = variant_intents(parts, "shuffled", seed)
        assert Counter(len(v) for v in shuffled.values()) == degree_counts
        assert Counter(c for v in shuffled.values() for c in v) == per_intent
        assert set(shuffled) <= set(items)
        ever_with_intents |= set(shuffled)
    assert variant_intents(parts, "shuffled", 3) == variant_intents(parts, "shuffled", 3)
    # Having intents is no signal: every item, with intents or not in truth, gets some.
    assert ever_with_intents == set(items)


def test_scorer_learns_the_path_weight_and_explains_by_the_contributing_path() -> None:
    from gravity.intents.scorer import Scorer, train_scorer

    graph, heldout = planted_graph()
    rows = list(zip(*(graph.edges[c].to_pylist() for c in ("src", "dst", "relation", "weight"))))
    arrays = train_scorer(
        graph.nodes["id"].to_pylist(), graph.nodes["kind"].to_pylist(), rows, SCORER, False
    )
    alpha, _ = arrays["path"]
    assert alpha > 0.1  # learned jointly: the path carries weight
    s = Scorer(Graph(graph.nodes, graph.edges, {}, arrays))
    user, item = s.index["u:u0-0"], s.index["i:s0-1"]
    best = s.paths(user, item, top=2)[0]
    assert best["intent"] == "group a" and best["item_serves"]
    assert best["contribution"] == pytest.approx(alpha * best["score"], abs=1e-3)
    # The score is translation + alpha x that path: the contribution is part of the score.
    col = int(np.flatnonzero(s.items == item)[0])
    trans = s.score(user, "rated", np.array([item]))[0]
    assert s.item_scores([user])[0][col] == pytest.approx(trans + best["contribution"], abs=1e-3)
    # The path term alone ranks the held-out items: it carries the planted signal by itself
    # (the intent edges also shape the embeddings, so translation with intents does well too).
    users = sorted({u for u, _ in heldout})
    nodes = [s.index[f"u:{u}"] for u in users]
    full = s.item_scores(nodes)
    s.alpha, s.beta = 0.0, 0.0
    path_only = full - s.item_scores(nodes)
    keys = s.item_keys
    rated = {(u, i) for u, i in (e[:2] for e in rows)}
    hits = 0
    for u, row in zip(users, path_only):
        ranked = [
            keys[c]
            for c in np.argsort(-row, kind="stable")
            if (f"u:{u}", f"i:{keys[c]}") not in rated
        ]
        hits += any((u, i) in heldout for i in ranked[:5])
    assert hits / len(users) >= 0.7
    # Without the path term (translation only) the path weight stays 0.
    plain = train_scorer(
        graph.nodes["id"].to_pylist(),
        graph.nodes["kind"].to_pylist(),
        rows,
        SCORER.model_copy(update={"intent_paths": False}),
        False,
    )
    assert np.all(plain["path"] == 0)


def test_item_cold_start_is_scored_by_intent_systems_only() -> None:
    graph, heldout = planted_graph(cold=3)
    # Held-out: each user also liked one never-rated item of their group.
    for user, _ in list(heldout):
        heldout[(user, f"c{user[1]}-{int(user.split('-')[1]) % 3}")] = None
    systems = ["intents", "intents_shuffled", "translation", "popularity", "itemknn", "lightgcn"]
    report = evaluate(graph, heldout, _cfg(systems=systems), progress=False)
    m = report["metrics"]
    assert report["counts"]["items_without_interactions"] == 12
    # LightGCN, as the other collaborative systems: no edge places a cold item, no cold slice.
    assert {s for s in systems if "cold_items" in m[s]} == {"intents", "intents_shuffled"}
    assert "overall" in m["lightgcn"] and "lightgcn" not in report["paired"]["cold_items"]
    # Of 12 cold items, 3 serve the user's intent: all three fit in the top 5 only by intents.
    assert m["intents"]["cold_items"]["hr"] >= 0.8
    assert m["intents_shuffled"]["cold_items"]["hr"] <= 0.7
    # Its interval resamples the cold items, then the users; so do the paired differences.
    assert m["intents"]["cold_items"]["ci_resamples"] == "items, users"
    assert "ci_resamples" not in m["intents"]["overall"]
    assert report["paired"]["cold_items"]["intents_shuffled"]["recall"]["crossed"]
    # Cold items never enter the warm ranking (popularity and kNN could not rank them).
    assert report["counts"]["users_overall"] == 40


# ---------------------------------------------------------------- LightGCN


def collaborative_graph(seed: int = 0, users_per: int = 12, items_per: int = 8):
    """Four taste groups and no intents: each user rates 5 of their group's 8 items and one of
    4 blockbusters (rated across groups: the most popular items); held out, one more item of
    the user's group. Who rated what tells which group items a user will like (collaborative
    structure); popularity knows only the blockbusters."""
    rng = np.random.default_rng(seed)
    ratings: dict[tuple[str, str], float] = {}
    heldout: dict[tuple[str, str], float | None] = {}
    for g in range(4):
        for j in range(users_per):
            user, mine = f"u{g}-{j}", rng.permutation(items_per)
            ratings |= {(user, f"g{g}-{k}"): 1.0 for k in mine[:5]}
            ratings[(user, f"b{rng.integers(4)}")] = 1.0
            heldout[(user, f"g{g}-{mine[5]}")] = None
    cfg = BuildConfig()
    nodes, edges, counts = assemble(ratings, Counter(), {}, [], {}, cfg, None, [])
    manifest = {"version": 1, "counts": counts, "config": cfg.model_dump(mode="json")}
    return Graph(nodes, edges, manifest, {}), heldout


def _validation_ndcg(name: str, ctx, cfg: EvalConfig, point: dict) -> list[float]:
    """Per-user NDCG@k on validation of ``name`` fitted on training minus validation (as
    ``tune`` fits each grid point)."""
    from gravity.intents.metrics import ndcg_at_k
    from gravity.intents.systems import fit_system, rank

    users = sorted(ctx.val)
    fn = fit_system(name, ctx.parts, ctx.val_train, ctx.val_ratings, point, cfg)
    recs = rank(fn, users, ctx.val_train, cfg.k, ctx.warm)
    return [ndcg_at_k(r, ctx.val[u], cfg.k) for r, u in zip(recs, users)]


def test_lightgcn_finds_collaborative_structure_that_popularity_cannot() -> None:
    """On validation (fitted on training minus validation, as tuning does), LightGCN ranks the
    user's group items: 0.57 NDCG@5 against popularity's 0.05 when written (0.49-0.58 against
    0.05-0.18 over planted seeds 0-2; a random ranking gets about 0.08)."""
    from gravity.intents.evaluate import build_context

    graph, heldout = collaborative_graph()
    cfg = _cfg()
    ctx = build_context(graph, heldout, cfg)
    assert ctx.val_train.nnz < ctx.train.nnz and len(ctx.val) == 48
    lightgcn = _validation_ndcg("lightgcn", ctx, cfg, cfg.grid.points("lightgcn")[0])
    popularity = _validation_ndcg("popularity", ctx, cfg, {})
    assert np.mean(lightgcn) >= 0.4
    diff = paired_difference(lightgcn, popularity, 1000, 0.95, 0, True)
    assert diff["value"] >= 0.25 and diff["ci"][0] > 0


def test_lightgcn_is_seeded() -> None:
    """The same seed gives the same scores, bit for bit, with two threads; another seed other
    scores (so the seed is used); the global torch RNG and thread count are left as they were.
    (Nothing in the fit depends on set or hash order: the graph is the CSR's index order.)"""
    import torch

    from gravity.intents.evaluate import build_context
    from gravity.intents.systems import fit_system

    graph, heldout = collaborative_graph()
    ctx = build_context(graph, heldout, _cfg())
    point = {"dim": 8, "epochs": 5, "batch_size": 64}
    users = list(range(len(ctx.parts.users)))
    state, threads = torch.get_rng_state(), torch.get_num_threads()

    def scores(seed: int) -> np.ndarray:
        cfg = _cfg(seed=seed, threads=2)
        return np.array(fit_system("lightgcn", ctx.parts, ctx.train, {}, point, cfg)(users))

    first = scores(0)
    assert np.array_equal(first, scores(0))
    assert not np.allclose(first, scores(1))
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads


def test_lightgcn_in_the_report_with_intervals_and_paired_differences() -> None:
    graph, heldout = planted_graph()
    systems = ["translation", "lightgcn", "popularity"]
    report = evaluate(graph, heldout, _cfg(systems=systems), progress=False)
    assert report["skipped"] == {}
    row = report["metrics"]["lightgcn"]["overall"]
    assert row["users"] == 40
    for metric in ("recall", "ndcg"):
        lo, hi = row[f"{metric}_ci"]
        assert lo <= row[metric] <= hi
    assert report["tuning"]["lightgcn"]["chosen"] == ONE_POINT.points("lightgcn")[0]
    est = report["paired"]["overall"]["lightgcn"]["ndcg"]
    assert est["ci"] is not None and est["p"] is not None and est["p_holm"] is not None
    lines = table_lines(report)
    assert any(line.startswith("| lightgcn | overall | 40 |") for line in lines)
    assert any(line.startswith("| overall | lightgcn |") for line in lines)


def test_lightgcn_without_torch_geometric_is_skipped_with_the_reason(monkeypatch) -> None:
    import sys

    import scipy.sparse as sp

    from gravity.errors import MissingDependencyError
    from gravity.intents.lightgcn import fit_lightgcn

    monkeypatch.setitem(sys.modules, "torch_geometric", None)
    graph, heldout = planted_graph()
    report = evaluate(graph, heldout, _cfg(systems=["lightgcn", "popularity"]), progress=False)
    assert set(report["metrics"]) == {"popularity"} and "lightgcn" not in report["tuning"]
    assert "pip install 'gravity[graph]'" in report["skipped"]["lightgcn"]
    assert any(line.startswith("lightgcn: skipped (") for line in table_lines(report))
    with pytest.raises(MissingDependencyError, match=r"gravity\[graph\]"):
        fit_lightgcn(sp.csr_matrix(np.ones((2, 2))), {}, 1, 0)


# ---------------------------------------------------------------- statistics


def test_bootstrap_against_hand_computed_cases() -> None:
    # Constant values: every resample has the same mean.
    assert bootstrap_ci([0.5] * 7) == {"value": 0.5, "ci": [0.5, 0.5], "n": 7}
    assert bootstrap_ci([]) == {"value": None, "ci": None, "n": 0}
    assert bootstrap_ci([1.0]) == {"value": 1.0, "ci": None, "n": 1}
    # Two users, 0 and 1: resampled means are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4, so
    # the 2.5% and 97.5% quantiles are 0 and 1.
    assert bootstrap_ci([0.0, 1.0], resamples=4000)["ci"] == [0.0, 1.0]
    # Many users: the percentile interval is close to mean +- 1.96 sd / sqrt(n).
    x = np.random.default_rng(1).normal(0.3, 1.0, 2000)
    ci = bootstrap_ci(x, resamples=4000)["ci"]
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert ci[0] == pytest.approx(x.mean() - half, abs=0.01)
    assert ci[1] == pytest.approx(x.mean() + half, abs=0.01)
    # Paired: the difference of the means, its interval from the per-user differences.
    d = paired_difference([1, 1, 0, 1], [0, 1, 0, 0], resamples=2000)
    assert d["value"] == pytest.approx(0.5) and d["n"] == 4
    assert paired_difference([1, 0], [1, 0]) == {"value": 0.0, "ci": [0.0, 0.0], "n": 2, "p": 1.0}
    # Seeded: the same call gives the same interval.
    assert bootstrap_ci(x[:50], seed=3) == bootstrap_ci(x[:50], seed=3)


def test_holm_against_a_hand_computed_case() -> None:
    from gravity.intents.stats import holm

    # Sorted p: 0.01, 0.03, 0.04, 0.2 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08, 0.2, then made
    # non-decreasing: 0.04, 0.09, 0.09, 0.2; only the first stays under 0.05.
    adjusted, reject = holm([0.01, 0.04, 0.03, 0.2], alpha=0.05)
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert reject == [True, False, False, False]
    # Two p-values under 0.05 raw, one left after the adjustment (0.02 x 2 = 0.04; 0.045).
    assert holm([0.045, 0.02], 0.05) == (pytest.approx([0.045, 0.04]), [True, True])
    assert holm([0.03, 0.02, 0.5], 0.05)[1] == [False, False, False]  # 0.02 x 3 = 0.06
    assert holm([]) == ([], [])


def test_no_hits_give_an_exact_upper_bound_not_a_point() -> None:
    from gravity.intents.stats import exact_bound

    # With no hit among n users, the two-sided Clopper-Pearson upper end b solves
    # (1 - b) ** n = (1 - level) / 2: a share of b leaves every user without a hit 2.5% of the
    # time. About 3.7 / n.
    b = exact_bound(100, 0.95)
    assert (1 - b) ** 100 == pytest.approx(0.025)
    assert b == pytest.approx(0.03622, abs=1e-5)
    zero = bootstrap_ci([0.0] * 100, unit=True)
    assert zero["value"] == 0.0 and zero["ci"] == [0.0, pytest.approx(b)] and zero["exact"]
    assert bootstrap_ci([1.0] * 100, unit=True)["ci"] == [pytest.approx(1 - b), 1.0]
    assert bootstrap_ci([0.0] * 100)["ci"] == [0.0, 0.0]  # values not known to be in [0, 1]
    both = paired_difference([0.0] * 100, [0.0] * 100, unit=True)
    assert both["ci"] == [pytest.approx(-b), pytest.approx(b)] and both["p"] == 1.0
    # In a report: popularity never hits the planted held-out items.
    graph, heldout = planted_graph()
    report = evaluate(graph, heldout, _cfg(systems=["popularity"]), progress=False)
    row = report["metrics"]["popularity"]["overall"]
    assert row["hr"] == 0 and row["no_hits"]
    for metric in ("recall", "ndcg", "hr"):
        assert row[f"{metric}_ci"] == [0.0, round(exact_bound(40), 4)]  # 40 users: 0.0881
    line = next(x for x in table_lines(report) if x.startswith("| popularity | overall |"))
    assert "[0.0000, 0.0881]" in line and "(no hits)" in line


def test_cold_item_intervals_resample_items_and_cover_where_items_vary() -> None:
    """Simulated cold-item slices, 200 of them: 60 users, each with 3 of 12 items, and items
    that vary (half found 80% of the time, half 10%; the population mean is 0.45). Resampling
    users alone treats the 12 items as fixed and misses 0.45 about half the time; items, then
    users, cover it at about the nominal 95%, with intervals about three times as wide."""
    from gravity.intents.stats import crossed_bootstrap_ci

    rng = np.random.default_rng(0)
    covered = {"crossed": 0, "users": 0}
    width = {"crossed": 0.0, "users": 0.0}
    for rep in range(200):
        p = np.where(rng.random(12) < 0.5, 0.8, 0.1)
        per_user = [
            {int(i): float(rng.random() < p[i]) for i in rng.choice(12, 3, replace=False)}
            for _ in range(60)
        ]
        crossed = crossed_bootstrap_ci(per_user, 400, seed=rep)
        assert crossed["crossed"] and crossed["items"] <= 12 and crossed["n"] == 60
        users = bootstrap_ci([np.mean(list(r.values())) for r in per_user], 400, seed=rep)
        assert crossed["value"] == pytest.approx(users["value"])
        for name, est in (("crossed", crossed), ("users", users)):
            covered[name] += est["ci"][0] <= 0.45 <= est["ci"][1]
            width[name] += (est["ci"][1] - est["ci"][0]) / 200
    assert 0.88 <= covered["crossed"] / 200 <= 0.99  # 0.94 when written
    assert covered["users"] / 200 <= 0.7  # 0.50 when written
    assert width["crossed"] > 2 * width["users"]
    # A user's value is the mean of their items' shares, for Recall and NDCG alike.
    from gravity.intents.evaluate import _item_shares
    from gravity.intents.metrics import ndcg_at_k, recall_at_k

    for _ in range(50):
        ranked = [int(x) for x in rng.permutation(20)[:5]]
        rel = {int(x) for x in rng.choice(20, int(rng.integers(1, 9)), replace=False)}
        shares = _item_shares([ranked], [rel], _cfg())
        assert np.mean(list(shares["ndcg_items"][0].values())) == pytest.approx(
            ndcg_at_k(ranked, rel, 5)
        )
        assert np.mean(list(shares["recall_items"][0].values())) == pytest.approx(
            recall_at_k(ranked, rel, 5)
        )
    # Seeded, and a paired difference gets a p-value.
    d = crossed_bootstrap_ci([{0: 1.0, 1: 0.0}, {1: 1.0, 2: 1.0}, {0: 0.0}], 200, paired=True)
    assert d["value"] == pytest.approx(0.5) and d["p"] is not None
    assert d == crossed_bootstrap_ci(
        [{0: 1.0, 1: 0.0}, {1: 1.0, 2: 1.0}, {0: 0.0}], 200, paired=True
    )


def test_paired_intervals_hold_their_level_on_null_data() -> None:
    """Two systems with the same hit rate, 300 users, 200 simulated evaluations: the 95%
    interval of the difference excludes 0 in about 5% of them; with a real difference of 0.1
    in nearly all."""
    rng = np.random.default_rng(0)
    false, true = 0, 0
    for rep in range(200):
        a, b = rng.random((2, 300)) < 0.2
        lo, hi = paired_difference(a, b, resamples=400, seed=rep)["ci"]
        false += not lo <= 0 <= hi
        c = rng.random(300) < 0.3
        lo, _ = paired_difference(c, b, resamples=400, seed=rep)["ci"]
        true += lo > 0
    assert 2 <= false <= 20  # 1% to 10%: about the nominal 5%
    assert true >= 150


# ---------------------------------------------------------------- split rules


def test_holdout_is_temporal_where_every_item_has_a_time() -> None:
    items = {"a": 3, "b": 1, "c": 2, "d": 5, "e": 4}
    held, temporal = holdout("u", items, seed=0, share=0.4)
    assert temporal and sorted(held) == ["d", "e"]  # the two latest
    mixed = dict(items) | {"f": None}
    held, temporal = holdout("u", mixed, seed=0, share=0.4)
    assert not temporal and len(held) == 2  # one time missing: seeded, same count
    assert holdout("u", mixed, seed=0, share=0.4) == (held, False)
    assert holdout("u", {"a": 1}, 0, 0.5) == ([], False)
    assert holdout("u", {"a": 1, "b": 2}, 0, 0.9) == (["b"], True)  # never all of them


def test_head_keeps_ties_together() -> None:
    assert head_items([5, 3, 3, 3, 1, 0, 0, 0, 0, 0], 0.2) == {0, 1, 2, 3}
    assert head_items([5, 4, 3, 2, 1], 0.2) == {0}
    assert head_items([2, 2, 2, 2], 0.25) == {0, 1, 2, 3}
    assert head_items([], 0.2) == set()


def test_relevance_threshold_and_tuning_on_validation_only() -> None:
    graph, heldout = planted_graph()
    # Every held-out pair rated 5 of 10: below the default of 8 on a 1-10 scale.
    rated = dict.fromkeys(heldout, 5.0)
    report = evaluate(graph, rated, _cfg(systems=["popularity"], relevant_min=8), progress=False)
    assert report["counts"]["heldout_below_threshold"] == 40
    assert report["metrics"]["popularity"]["overall"]["users"] == 0
    relevant = evaluate(graph, rated, _cfg(systems=["popularity"], relevant_min=5), progress=False)
    assert relevant["metrics"]["popularity"]["overall"]["users"] == 40
    # Tuning: a grid whose points differ; the choice is the point best on validation.
    grid = ONE_POINT.model_copy(update={"itemknn": [{"K": 1}], "als": [{"factors": 2}]})
    grid = TuningGrid(
        scorer=[{"epochs": 1}, {}],
        itemknn=[{"K": 1}, {"K": 10}],
        als=[{"factors": 2}, {"factors": 8}],
        bpr=[{"factors": 2}, {"factors": 8}],
        lightgcn=[{"dim": 8}, {"dim": 16}],
    )
    report = evaluate(graph, heldout, _cfg(systems=["intents"], grid=grid), progress=False)
    tuned = report["tuning"]["intents"]
    assert len(tuned["validation_ndcg"]) == 2 and tuned["users"] == 40
    best = max(range(2), key=lambda j: (tuned["validation_ndcg"][j], -j))
    assert tuned["chosen"] == tuned["points"][best]
    assert any("| intents | overall |" in line for line in table_lines(report))


def test_tuning_chooses_on_validation_and_scores_the_test_split_once(monkeypatch) -> None:
    """A planted system whose grid point 'K=1' ranks each user's validation items first and
    'K=2' their test items: the test-best point is K=2, the validation-best K=1. Tuning must
    choose K=1, fit every point on training minus validation, and fit on all of training (to
    rank the test split) once, with the chosen point."""
    import gravity.intents.systems as systems
    from gravity.intents.evaluate import build_context

    graph, heldout = planted_graph()
    cfg = _cfg(
        systems=["itemknn", "als"],
        grid=TuningGrid(
            scorer=[{}, {}],
            itemknn=[{"K": 2}, {"K": 1}],
            als=[{"factors": 1}, {"factors": 2}],
            bpr=[{"factors": 1}, {"factors": 2}],
            lightgcn=[{"dim": 8}, {"dim": 16}],
        ),
    )
    ctx = build_context(graph, heldout, cfg)
    fits: list[tuple[str, dict, bool]] = []

    def planted_fit(name, parts, train, ratings, point, ecfg):
        full = train.nnz == ctx.train.nnz
        assert full or train.nnz == ctx.val_train.nnz  # training, or training minus validation
        fits.append((name, dict(point), full))
        oracle = ctx.val if point.get("K", point.get("factors")) == 1 else ctx.test

        def score(users):
            out = np.zeros((len(users), len(parts.items)))
            for row, u in enumerate(users):
                out[row, sorted(oracle.get(u, ()))] = 1.0
            return out

        return score

    monkeypatch.setattr(systems, "fit_system", planted_fit)
    report = evaluate(graph, heldout, cfg, progress=False)
    for name in ("itemknn", "als"):
        tuned = report["tuning"][name]
        key = "K" if name == "itemknn" else "factors"
        assert tuned["chosen"] == {key: 1}  # validation-best, not test-best
        assert tuned["validation_ndcg"][tuned["points"].index({key: 1})] == 1.0
        assert [f for f in fits if f[0] == name and f[2]] == [(name, {key: 1}, True)]
        assert sum(f[0] == name and not f[2] for f in fits) == 2  # each point on validation
    # The test split measured the chosen points: the validation oracle, not the test oracle.
    assert report["metrics"]["itemknn"]["overall"]["hr"] < 1.0


def test_grids_must_spend_the_same_budget() -> None:
    with pytest.raises(ValueError, match="same number of points"):
        TuningGrid(itemknn=[{"K": 10}])
    with pytest.raises(ValueError, match="unknown setting"):
        TuningGrid(
            scorer=[{"depth": 3}],
            itemknn=[{"K": 1}],
            als=[{"factors": 2}],
            bpr=[{"factors": 2}],
            lightgcn=[{}],
        )
    # LightGCN's grid spends the same budget as the others, over its own settings.
    with pytest.raises(ValueError, match="same number of points"):
        TuningGrid.model_validate(ONE_POINT.model_dump() | {"lightgcn": [{}, {}]})
    with pytest.raises(ValueError, match="unknown setting"):
        TuningGrid.model_validate(ONE_POINT.model_dump() | {"lightgcn": [{"factors": 8}]})
    assert len(TuningGrid().lightgcn) == len(TuningGrid().bpr) == len(TuningGrid().als)
    assert all(isinstance(p["layers"], int) for p in TuningGrid().points("lightgcn"))
    assert TuningGrid().points("popularity") == [{}]
    assert TuningGrid().points("translation") == TuningGrid().points("intents")


def test_one_hit_among_many_users_is_not_no_hits() -> None:
    """The flag reads the unrounded HR: one hit among 25,000 users rounds to 0.0000."""
    from gravity.intents.evaluate import _summary

    n = 25_000
    per_user = {m: [0.0] * n for m in ("recall", "ndcg", "hr")}
    for values in per_user.values():
        values[0] = 1.0
    row = _summary(per_user, EvalConfig(bootstrap=200))
    assert row["hr"] == 0.0 and not row["no_hits"]
    per_user = {m: [0.0] * n for m in ("recall", "ndcg", "hr")}
    assert _summary(per_user, EvalConfig(bootstrap=200))["no_hits"]


@pytest.mark.parametrize(
    ("level", "label"),
    [(0.95, "95% CI"), (0.9, "90% CI"), (0.999, "99.9% CI"), (0.99999999, "99.999999% CI")],
)
def test_the_tables_name_the_interval_level_the_run_used(level, label) -> None:
    est = {"value": 0.01, "ci": [0.0, 0.02], "p": 0.04, "p_holm": 0.08}
    report = {
        "k": 10,
        "config": {"level": level},
        "metrics": {"intents": {"overall": {"users": 3, "recall": 0.1, "recall_ci": [0.0, 0.2],
                                            "ndcg": 0.1, "ndcg_ci": [0.0, 0.2], "hr": 0.3}}},
        "focus": "intents",
        "paired": {"overall": {"popularity": {"recall": est, "ndcg": est}}},
    }  # fmt: skip
    headers = [line for line in table_lines(report) if line.startswith("| s")]
    assert len(headers) == 2 and all(f"[{label}]" in h for h in headers)
    assert all("95%" not in h for h in headers) or level == 0.95
