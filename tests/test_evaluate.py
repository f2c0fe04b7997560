"""Evaluation: judges built to be biased (position, length) against the debiasing, shuffling
undone, identical candidates, human sheets with several raters and hostile CSVs, held-out
leakage, the report's reading, the demo config, and `gravity run` end to end."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gravity.books import load_catalog
from gravity.config import RunConfig, load_yaml_model
from gravity.errors import GravityError
from gravity.evaluate.config import EvalConfig, SystemSpec
from gravity.evaluate.human import export_sheets, import_rankings
from gravity.evaluate.judge import labels_for, permutation
from gravity.evaluate.metrics import BootstrapSettings, compute_metrics, outcome_from_pairs
from gravity.evaluate.runner import Case, check_held_out, recorded_training_data, run_judge
from gravity.llm.engine import Engine
from gravity.resources import _PKG
from tests.fakes import ScriptedBackend

ROOT = _PKG.parent


def test_permutations_rotate_every_system_through_every_position():
    systems = ["base", "prompt", "sft", "naive", "gravity"]
    orders = [permutation(systems, "case-1", r, seed=0) for r in range(5)]
    for position in range(5):
        assert sorted(o[position] for o in orders) == sorted(systems)
    # The base order is seeded per case (and identical for the same case and seed).
    assert permutation(systems, "case-1", 0, 0) == permutation(systems, "case-1", 0, 0)
    assert len({tuple(permutation(systems, f"case-{i}", 0, 0)) for i in range(20)}) > 1
    assert labels_for(3) == ["A", "B", "C"]


def _cases(n_readers=3):
    from gravity.profiles import sample_profiles

    book = load_catalog()[0]
    readers = sample_profiles("JP", n_readers, seed=5)
    return [Case(r, book) for r in readers]


class _Scorer(ScriptedBackend):
    """A judge that can score labels, by a policy over the prompt: a judge built to be biased."""

    def __init__(self, policy) -> None:
        super().__init__(constrains_json=False)
        self.policy = policy

    def score_labels(self, requests, labels):
        return [self.policy(r.messages[-1].content, labels) for r in requests]


def _candidates(prompt: str, labels: list[str]) -> dict[str, str]:
    """label -> the text shown under it in a judge prompt."""
    out = {}
    for label in labels:
        if f"[{label}]\n" not in prompt:
            return {}
        text = prompt.split(f"[{label}]\n", 1)[1]
        out[label] = text.split("\n\n", 1)[0]
    return out


def position_one(prompt, labels):
    """Always the first position (and 3 for every rating)."""
    if labels[0] == "1":
        return {k: (0.0 if k == "3" else -5.0) for k in labels}
    return {k: (0.0 if i == 0 else -4.0) for i, k in enumerate(labels)}


def prefers_good(prompt, labels):
    texts = _candidates(prompt, labels)
    if not texts:  # an interest rating: GOOD texts get 5, others 2
        best = "5" if "GOOD" in prompt.split("A description of")[1] else "2"
        return {k: (0.0 if k == best else -30.0) for k in labels}
    return {k: (0.0 if "GOOD" in texts[k] else -4.0) for k in labels}


def prefers_longer(prompt, labels):
    texts = _candidates(prompt, labels)
    if not texts:
        return {k: 0.0 for k in labels}
    longest = max(texts, key=lambda k: len(texts[k].split()))
    return {k: (0.0 if k == longest else -4.0) for k in labels}  # 98% for the longer text


SYSTEMS5 = ["base", "prompt", "sft", "naive", "gravity"]


def _judge(cases, descriptions, policy, protocol="pairwise"):
    systems = list(descriptions)
    cfg = EvalConfig(systems=[SystemSpec(name=s, kind="base") for s in systems], protocol=protocol)
    engine = Engine(_Scorer(policy), None, progress=False)
    per_case, stats, _ = run_judge(cases, descriptions, cfg, engine)
    meta = {c.id: (c.reader.id, c.reader.country) for c in cases}
    outcomes = [
        outcome_from_pairs(cid, *meta[cid], pairs, per_case["interest"].get(cid))
        for cid, pairs in per_case["pairs"].items()
    ]
    settings_ = BootstrapSettings(resamples=200, method="percentile", min_readers=2)
    metrics = compute_metrics(outcomes, meta, systems, "gravity", {}, settings_)
    return metrics, stats, outcomes


@pytest.mark.parametrize("protocol", ["pairwise", "ranking"])
def test_position_bound_judge_puts_every_system_at_chance(protocol):
    cases = _cases(4)
    descriptions = {s: [f"text {i} by {s}" for i in range(4)] for s in SYSTEMS5}
    metrics, stats, _ = _judge(cases, descriptions, position_one, protocol)
    overall = metrics["overall"]
    for s in SYSTEMS5:
        assert overall["systems"][s]["top1"]["value"] == pytest.approx(0.2)
        for b in SYSTEMS5:
            if b != s:
                assert overall["preference_gain"][s][b]["value"] == pytest.approx(0.0)
    assert stats["position_consistency"] == 0.0 and stats["parse_rate"] == 1.0
    assert stats["method"] == "likelihood" and stats["excluded_cases"] == 0


@pytest.mark.parametrize("protocol", ["pairwise", "ranking"])
def test_shuffling_is_undone(protocol):
    cases = _cases(3)
    systems = ["base", "prompt", "gravity"]
    descriptions = {
        s: [("GOOD " if s == "gravity" else "meh ") + f"{s} {i}" for i in range(3)] for s in systems
    }
    metrics, stats, _ = _judge(cases, descriptions, prefers_good, protocol)
    overall = metrics["overall"]
    assert overall["systems"]["gravity"]["top1"]["value"] == 1.0
    # prefers_good gives the GOOD text logit 0 against -4: probability 1 / (1 + e^-4) in each
    # order; pairwise averages the probabilities, ranking reads each rotation's most probable.
    p_good = 1 / (1 + math.exp(-4))
    expected = (p_good - 0.5) * 100 if protocol == "pairwise" else 50.0
    assert overall["paired"]["base"]["preference_gain"]["value"] == pytest.approx(expected)
    assert overall["paired"]["base"]["interest"]["value"] == pytest.approx(3.0)
    assert stats["position_consistency"] == 1.0


def first_biased_likes_good(prompt, labels):
    """Logit of A over B: 2 for the first position, +1 for a GOOD text in A, -1 in B."""
    texts = _candidates(prompt, labels)
    if not texts:
        return {k: 0.0 for k in labels}
    d = 2.0 + ("GOOD" in texts["A"]) - ("GOOD" in texts["B"])
    return {"A": d, "B": 0.0}


def test_pairwise_averages_probabilities_over_both_orders():
    """A judge biased to the first position with a weaker content signal: its most probable
    answer is always A (every verdict flips: consistency 0), yet the mean probability over both
    orders keeps the content signal, hand-computed: GOOD first P(A) = s(3), GOOD second
    P(B) = 1 - s(1), value (s(3) + 1 - s(1)) / 2 = 0.610758."""
    cases = _cases(3)
    descriptions = {
        "base": [f"meh {i}" for i in range(3)],
        "gravity": [f"GOOD {i}" for i in range(3)],
    }
    metrics, stats, outcomes = _judge(cases, descriptions, first_biased_likes_good)

    def sig(x):
        return 1 / (1 + math.exp(-x))

    value = (sig(3) + 1 - sig(1)) / 2
    assert value == pytest.approx(0.610758, abs=1e-6)
    for o in outcomes:
        assert o.wins[("base", "gravity")] == pytest.approx(1 - value)
        assert o.wins[("gravity", "base")] == pytest.approx(value)
    gain = metrics["overall"]["paired"]["base"]["preference_gain"]["value"]
    assert gain == pytest.approx((value - 0.5) * 100)
    assert stats["position_consistency"] == 0.0 and stats["first_position_rate"] == 1.0
    assert stats["first_position_mass"] == pytest.approx((sig(3) + sig(1)) / 2)


def test_longer_text_judge_is_length_controlled():
    """A judge that always prefers the longer text: `gravity` writes longer on average and wins
    most pairs as judged; the length-controlled win rate puts it back near 50%."""
    import random

    from gravity.evaluate.length import length_controlled

    rng = random.Random(1)
    books = load_catalog()
    cases = [Case(c.reader, books[k]) for c in _cases(5) for k in range(8)]
    lows = {"gravity": 40, "base": 20, "prompt": 20}
    descriptions = {
        s: [" ".join(["word"] * rng.randint(lo, lo + 60)) + f" {s}{k}" for k in range(len(cases))]
        for s, lo in lows.items()
    }
    _, _, outcomes = _judge(cases, descriptions, prefers_longer)
    words = {
        c.id: {s: len(descriptions[s][k].split()) for s in descriptions}
        for k, c in enumerate(cases)
    }
    lc = length_controlled(outcomes, words, list(lows))
    assert lc["raw"]["gravity"]["base"] > 0.7 and lc["raw"]["gravity"]["prompt"] > 0.7
    # The judge gives the longer text log-odds 4 whatever the difference: the fit finds that
    # length term and no system effect.
    assert lc["lc"]["gravity"]["base"] == pytest.approx(0.5, abs=0.02)
    assert lc["lc"]["gravity"]["prompt"] == pytest.approx(0.5, abs=0.02)
    assert lc["gamma"] == pytest.approx(4.0, abs=0.2)


def test_identical_candidates_tie_and_are_not_judged():
    cases = _cases(2)
    descriptions = {
        "base": ["same text", "x"],
        "prompt": ["same  text", "y"],
        "gravity": ["GOOD", "GOOD z"],
    }
    _, stats, outcomes = _judge(cases, descriptions, prefers_good)
    assert stats["identical_pairs"] == 1
    assert stats["calls"] - stats["interest_calls"] == 2 * 2 + 2 * 3  # 2 pairs + 3 pairs, 2 orders
    first = next(o for o in outcomes if o.case_id == cases[0].id)
    assert first.wins[("base", "prompt")] == 0.5


def test_unusable_constrained_answers_exclude_and_count_cases():
    """A judge that answers in free text (no constraining backend): every answer is rejected,
    the case missing its rotations is excluded and counted, and nothing is guessed."""
    cases = _cases(2)
    systems = ["base", "prompt", "gravity"]
    cfg = EvalConfig(systems=[SystemSpec(name=s, kind="base") for s in systems], protocol="ranking")
    engine = Engine(
        ScriptedBackend(script=["A great read. I prefer C, then B."] * 9, constrains_json=False),
        None,
        progress=False,
    )
    texts = {"base": ["t1", "t2"], "prompt": ["t1", "t2"], "gravity": ["g1", "t2"]}
    per_case, stats, rejects = run_judge(cases, texts, cfg, engine)
    assert stats["method"] == "constrained" and stats["excluded_cases"] == 1
    assert list(per_case["pairs"]) == [cases[1].id]  # all three identical: ties, no call needed
    assert stats["calls"] == 2 + 3 and stats["parsed"] == 0 and stats["parse_rate"] == 0.0
    assert {r["reason"] for r in rejects} == {"judge_unparsable"} and len(rejects) == 5


def _eval_dir(tmp_path: Path) -> Path:
    d = tmp_path / "eval"
    d.mkdir(exist_ok=True)
    rows = []
    for i, country in enumerate(["US", "US", "BR"]):
        rows.append(
            {
                "case_id": f"r{i}:b",
                "reader_id": f"r{i}",
                "country": country,
                "item_id": "b",
                "item_title": "Emma, or <Love>",
                "profile_text": f"Reader r{i} <likes> history.",
                "descriptions": {
                    "base": f"plain {i}",
                    "gravity": f'for you, "{i}"',
                    "prompt": f"p {i}" if i else "plain  0",  # case 0: identical to base
                },
                "alignment": {"base": 0.0, "gravity": 0.1, "prompt": None},
            }
        )
    (d / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def _fill(sheets: Path, rater: str, order: dict[str, int], path: Path) -> Path:
    """A filled sheet: labels ranked by ``order`` (system -> preference, lower is better)."""
    key = json.loads((sheets / "key.json").read_text())
    with open(sheets / "sheets.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for case_id in {r["case_id"] for r in rows}:
        mine = [r for r in rows if r["case_id"] == case_id]
        mine.sort(key=lambda r: min(order[s] for s in key[case_id][r["label"]]))
        for rank, r in enumerate(mine, start=1):
            r["rank"], r["rater_id"] = rank, rater
            r["interest"] = 5 if "gravity" in key[case_id][r["label"]] else 2
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_human_sheets_round_trip_with_two_raters(tmp_path):
    eval_dir = _eval_dir(tmp_path)
    sheets = tmp_path / "sheets"
    assert export_sheets(eval_dir, sheets) == 3
    html = (sheets / "reader-r0.html").read_text()
    assert "Emma, or &lt;Love&gt;" in html and "gravity" not in html  # anonymous labels
    assert "answer as yourself" in html and "each rank once" in html and "Not saved" in html
    with open(sheets / "sheets.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["rank"] for r in rows} == {""}  # case 0 shows its copy once
    out = tmp_path / "human"
    first = _fill(sheets, "ana", {"gravity": 1, "base": 2, "prompt": 3}, tmp_path / "a.csv")
    metrics = import_rankings(eval_dir, sheets, [first], out, n_boot=200, min_readers=2)
    overall = metrics["overall"]
    assert overall["systems"]["gravity"]["top1"]["value"] == 1.0
    assert overall["systems"]["gravity"]["interest"]["value"] == 5.0
    # base vs prompt: base wins the two cases with distinct texts, ties the identical one.
    assert overall["preference_gain"]["base"]["prompt"]["value"] == pytest.approx(100 / 3)
    assert metrics["human"]["agreement"]["alpha"] is None
    assert "alignment" not in overall["systems"]["gravity"]  # not a human result
    # A second rater with the same download name: both kept, agreement reported.
    second = _fill(sheets, "ben", {"prompt": 1, "base": 2, "gravity": 3}, tmp_path / "a.csv")
    metrics = import_rankings(eval_dir, sheets, [second], out, n_boot=200, min_readers=2)
    assert metrics["human"]["raters"] == ["ana", "ben"]
    assert sorted(p.name for p in (out / "ratings").iterdir()) == ["ana.csv", "ben.csv"]
    assert metrics["human"]["agreement"]["alpha"] < 0  # they rank in opposite orders
    assert metrics["overall"]["systems"]["gravity"]["top1"]["value"] < 1.0
    report = (out / "report.md").read_text()
    assert "2 rater(s) (ana, ben)" in report and "Krippendorff's alpha" in report
    assert "too few readers (n=1)" in report  # per country BR has one reader
    assert not re.search(r"\bnan\b", report, re.I)


def test_human_import_takes_readers_from_the_evaluation_and_its_focus(tmp_path):
    """A sheet whose reader_id column says r0 on every row (a spreadsheet fill-down) still
    counts three readers: reader and country come from the evaluation's cases. The focus is the
    evaluation's (metrics.json), or --focus; never a hard-coded name."""
    eval_dir = _eval_dir(tmp_path)
    (eval_dir / "metrics.json").write_text(json.dumps({"focus": "prompt"}))
    sheets = tmp_path / "sheets"
    export_sheets(eval_dir, sheets)
    filled = _fill(sheets, "ana", {"gravity": 1, "base": 2, "prompt": 3}, tmp_path / "a.csv")
    with open(filled, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["reader_id"], r["country"] = "r0", "US"
    with open(filled, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "human"
    metrics = import_rankings(eval_dir, sheets, [filled], out, n_boot=200, min_readers=2)
    assert metrics["overall"]["systems"]["gravity"]["top1"]["n"] == 3
    assert sorted(metrics["by_country"]) == ["BR", "US"]
    assert metrics["focus"] == "prompt" and set(metrics["overall"]["paired"]) == {"base", "gravity"}
    assert "r2" in (out / "ratings" / "ana.csv").read_text()  # the kept rows are corrected too
    metrics = import_rankings(eval_dir, sheets, [filled], out, n_boot=200, focus="base")
    assert metrics["focus"] == "base"


def test_human_form_can_show_the_profile(tmp_path):
    sheets = tmp_path / "sheets"
    export_sheets(_eval_dir(tmp_path), sheets, show_profile=True)
    html = (sheets / "reader-r1.html").read_text()
    assert "on behalf of this reader" in html and "Reader r1 &lt;likes&gt; history." in html


def _sheet(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    eval_dir = _eval_dir(tmp_path)
    sheets = tmp_path / "sheets"
    export_sheets(eval_dir, sheets)
    good = _fill(sheets, "ana", {"gravity": 1, "base": 2, "prompt": 3}, tmp_path / "good.csv")
    with open(good, newline="") as f:
        return eval_dir, sheets, list(csv.DictReader(f))


def _write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_human_import_errors_name_the_file_and_write_nothing(tmp_path):
    eval_dir, sheets, rows = _sheet(tmp_path)
    out = tmp_path / "h"
    bad = tmp_path / "bad.csv"
    same = [{**r, "rank": "1"} for r in rows]
    with pytest.raises(GravityError, match=r"ranks must be 1\.\.\d, each once"):
        import_rankings(eval_dir, sheets, [_write(bad, same)], out)
    rows[0]["rank"] = "first"
    with pytest.raises(GravityError, match=r"bad.csv:2: rank: 'first' is not a whole number"):
        import_rankings(eval_dir, sheets, [_write(bad, rows)], out)
    rows[0]["rank"], rows[0]["rater_id"] = "1", ""
    with pytest.raises(GravityError, match=r"bad.csv:2: rater_id"):
        import_rankings(eval_dir, sheets, [_write(bad, rows)], out)
    rows[0]["rater_id"] = "ana"
    _write(bad, rows).write_text(bad.read_text().replace("plain 1", "plain, 1", 1))  # a comma
    with pytest.raises(GravityError, match=r"bad.csv:\d+: 10 columns, the header has 9"):
        import_rankings(eval_dir, sheets, [bad], out)
    with pytest.raises(GravityError, match="gravity human export"):
        import_rankings(eval_dir, tmp_path, [bad], out)
    assert not out.exists()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    junk=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
    keep_header=st.booleans(),
)
def test_any_malformed_csv_is_one_error_naming_the_file(tmp_path, junk, keep_header):
    eval_dir, sheets, rows = _sheet(tmp_path)
    path = tmp_path / "hostile.csv"
    header = (",".join(rows[0]) + "\n").encode() if keep_header else b""
    path.write_bytes(header + junk)
    out = tmp_path / "hostile-out"
    with pytest.raises(GravityError, match="hostile.csv"):
        import_rankings(eval_dir, sheets, [path], out)
    assert not out.exists()


def test_evaluate_cli_hostile_csv_exits_2(tmp_path):
    import subprocess
    import sys

    eval_dir, sheets, _ = _sheet(tmp_path)
    bad = tmp_path / "nul.csv"
    bad.write_bytes(b"case_id,label\x00\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gravity",
            "human",
            "import",
            str(eval_dir),
            str(bad),
            "--sheets",
            str(sheets),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nul.csv" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_held_out_leakage_is_refused(tmp_path):
    cases = _cases(2)
    run = tmp_path / "run"
    run.mkdir()
    (run / "pairs.jsonl").write_text(
        json.dumps({"user_id": cases[0].reader.id, "item_id": "other"}) + "\n"
    )
    with pytest.raises(GravityError, match=f"readers \\['{cases[0].reader.id}'\\]"):
        check_held_out(cases, [run])
    (run / "pairs.jsonl").write_text(
        json.dumps({"user_id": "someone", "item_id": cases[0].book.id}) + "\n"
    )
    with pytest.raises(GravityError, match="books"):
        check_held_out(cases, [run])
    (run / "pairs.jsonl").write_text(json.dumps({"user_id": "someone", "item_id": "other"}) + "\n")
    check_held_out(cases, [run])


def test_evaluate_checks_the_training_data_each_model_records(tmp_path):
    model = tmp_path / "models" / "gravity"
    model.mkdir(parents=True)
    data = tmp_path / "pairs"
    data.mkdir()
    (model / "train_config.yaml").write_text(f"kind: dpo\ndata: {data}\nmodel: smollm2\n")
    lost = tmp_path / "models" / "sft"
    lost.mkdir()
    (lost / "train_config.yaml").write_text("kind: sft\ndata: /nowhere/at/all\n")
    cfg = EvalConfig(
        systems=[
            SystemSpec(name="base", kind="base"),
            SystemSpec(name="gravity", model=str(model)),
            SystemSpec(name="sft", model=str(lost)),
        ]
    )
    paths, notes = recorded_training_data(cfg)
    assert paths == [data]
    assert len(notes) == 1 and "sft" in notes[0] and "not found" in notes[0]


def test_demo_config_is_valid():
    cfg = load_yaml_model(ROOT / "configs" / "demo.yaml", RunConfig)
    assert cfg.modes == ["gravity", "naive"] and cfg.train_systems == ["sft", "naive", "gravity"]
    assert cfg.generate.backend.model == "smollm2" and cfg.train.model == "smollm2"
    assert {p for p in cfg.profiles.countries} == {"US", "BR", "JP", "IN"}
    ev = cfg.evaluate
    assert (
        ev.protocol == "pairwise"
        and ev.judge_method == "auto"
        and ev.judge.backend == "transformers"
    )
    assert cfg.heldout.n_per_country * len(cfg.heldout.countries) >= ev.min_readers


def test_run_config_consistency_errors(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("modes: [gravity]\ntrain_systems: [naive]\n")
    with pytest.raises(GravityError, match="train_systems has 'naive'"):
        load_yaml_model(bad, RunConfig)
    bad.write_text("evaluate: {systems: [{name: only, kind: base}]}\n")
    with pytest.raises(GravityError, match="compare at least two systems"):
        load_yaml_model(bad, RunConfig)


def test_gravity_run_end_to_end_and_resume(tmp_path, tiny_model):
    """The whole pipeline through the CLI: pairs from the embedded model (both modes), three
    systems trained on a tiny model, evaluated with the embedded judge; a rerun resumes."""
    import os
    import subprocess
    import sys

    import yaml

    out = tmp_path / "run"
    config = {
        "out_dir": str(out),
        "profiles": {"countries": ["US", "BR"], "n_per_country": 1, "seed": 0},
        "heldout": {"countries": ["US", "BR"], "n_per_country": 1, "seed": 1},
        "heldout_items": 10,
        "generate": {
            "facets": ["values"],
            "max_items": 1,
            "description_tokens": 96,
            "scenario_tokens": 48,
            "filters": {"min_words": 5},
        },
        "train": {"model": str(tiny_model), "max_steps": 1, "max_length": 640},
        "evaluate": {
            "items_per_reader": 1,
            "max_new_tokens": 24,
            "bootstrap": 200,
            "min_readers": 2,
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(
        [sys.executable, "-m", "gravity", "run", str(path)], capture_output=True, text=True, env=env
    )
    assert first.returncode == 0, first.stderr[-3000:]
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    for name in ("report.md", "metrics.json", "cases.jsonl", *metrics["plots"]):
        assert (out / "eval" / name).is_file(), name
    assert "alignment.png" in metrics["plots"]
    # The embedded model judges mostly by position; averaged over both orders its naive quality
    # labels may still all be ties and be dropped; the run then goes on without the naive
    # system and says so.
    naive = json.loads((out / "pairs-naive" / "summary.json").read_text())
    judged = naive["naive_judge"]
    assert judged["pairs"] == judged["decided"] + judged["ties"] + judged["unparsable"]
    trained_systems = ["sft", "naive", "gravity"] if naive["written"] else ["sft", "gravity"]
    assert metrics["systems"] == ["base", "prompt", *trained_systems]
    if not naive["written"]:
        assert "naive: no pairs written" in first.stdout
    assert metrics["cases"] == 2 and metrics["readers"] == 2
    judge = metrics["judge"]
    assert judge["method"] == "likelihood" and judge["parse_rate"] == 1.0
    assert judge["calls"] == judge["parsed"] > 0 and judge["rejected"] == 0
    assert set(metrics["by_country"]) == {"US", "BR"}
    assert metrics["leakage"]["checked_against"]  # the run's own training pairs
    report = (out / "eval" / "report.md").read_text()
    assert "## Reading" in report and "## Per country" in report and "## Length" in report
    assert not re.search(r"\bnan\b", report, re.I) and "n/a" not in report
    assert "Too few readers (n=1, fewer than min_readers=" in report  # one reader per country
    heldout = {json.loads(x)["id"] for x in (out / "heldout.jsonl").read_text().splitlines()}
    trained = {
        json.loads(x)["user_id"]
        for x in (out / "pairs-gravity" / "pairs.jsonl").read_text().splitlines()
    }
    assert heldout and trained and heldout.isdisjoint(trained)
    second = subprocess.run(
        [sys.executable, "-m", "gravity", "run", str(path)], capture_output=True, text=True, env=env
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("already trained") == len(trained_systems)
    assert json.loads((out / "eval" / "metrics.json").read_text())["overall"] == metrics["overall"]


def _report_metrics(pairs_by_reader, judge_stats, align=None, copy=None, min_readers=2):
    outcomes, meta = [], {}
    for k, wins in enumerate(pairs_by_reader):
        case = f"r{k}:b"
        meta[case] = (f"r{k}", "US")
        outcomes.append(outcome_from_pairs(case, f"r{k}", "US", {("gravity", "base"): wins}))
    values = {}
    if align:
        values["alignment"] = {c: dict(zip(("gravity", "base"), align)) for c in meta}
    if copy:
        values["copy_rate"] = {
            c: {"gravity": copy[0] + 0.01 * k, "base": copy[1]} for k, c in enumerate(meta)
        }
    settings_ = BootstrapSettings(resamples=500, method="percentile", min_readers=min_readers)
    m = compute_metrics(outcomes, meta, ["base", "gravity"], "gravity", values, settings_)
    m["judge"] = {
        "protocol": "pairwise",
        "method": "likelihood",
        "backend": "transformers",
        "model": "smollm2",
        "self_preference_systems": [],
        "agreement_with_alignment": {"pairs": 0, "agreement": None},
        **judge_stats,
    }
    m["length"] = {"mean_words": {"base": 50.0, "gravity": 60.0}, "pairs": 0}
    return m


def _validated(metrics):
    """``metrics`` with the controls of a judge that passed the positive control."""
    from gravity.evaluate.controls import summarize
    from tests.test_controls import SETTINGS, _row

    rows = [_row(f"r{k}", f"i{k}", 0.1 + 0.01 * k, 0.8 + 0.01 * k) for k in range(6)]
    metrics["controls"] = summarize(rows, SETTINGS)
    assert metrics["controls"]["judge_validated"] is True
    return metrics


def test_report_reading_is_computed_from_what_was_measured():
    from gravity.evaluate.report import reading

    judge = {
        "calls": 40,
        "parsed": 40,
        "parse_rate": 1.0,
        "position_consistency": 0.2,
        "first_position_mass": 0.7,
    }
    unchecked = "\n".join(reading(_report_metrics([0.5] * 6, judge)))  # no controls run
    assert "preference gain (points) +0.0 [+0.0, +0.0] (judge not validated: not evidence)" in (
        unchecked
    )
    tied = "\n".join(reading(_validated(_report_metrics([0.5] * 6, judge))))
    assert "answered 40 of 40 calls (100.0%): usable" in tied
    assert "mostly follows position: only 20.0% of pairs" in tied
    assert "shown first 70.0% of its probability" in tied
    assert "preference gain (points) +0.0 [+0.0, +0.0] (not distinguishable" in tied
    assert "interestingness" not in tied  # no ratings: not mentioned
    judge = {
        "calls": 40,
        "parsed": 30,
        "parse_rate": 0.75,
        "position_consistency": 0.9,
        "self_preference_systems": ["base", "gravity"],
    }
    clear = _report_metrics([1.0] * 6, judge, align=(0.2, 0.1), copy=(0.3, 0.1))
    text = "\n".join(reading(clear))
    assert "(75.0%): incomplete" in text and "90.0% of pairs keep their verdict" in text
    assert "self-preference" in text and "`base`, `gravity`" in text
    assert "preference gain (points) +50.0 [+50.0, +50.0]" in text
    assert "alignment +0.100 [+0.100, +0.100]" in text
    assert "coincides with more copying of the profile" in text
    few = "\n".join(reading(_report_metrics([1.0] * 3, judge, min_readers=5)))
    assert "preference gain (points) too few readers (n=3)" in few and "(higher)" not in few


def test_report_without_verdicts_says_why(tmp_path):
    from gravity.evaluate.report import write_report

    judge = {
        "calls": 8,
        "parsed": 0,
        "parse_rate": 0.0,
        "position_consistency": None,
        "identical_pairs": 0,
        "excluded_cases": 4,
    }
    m = _report_metrics([], judge)
    m["overall"]["judged_cases"] = 0
    m.update(cases=4, readers=4, leakage={"checked_against": [], "notes": []})
    cfg = EvalConfig()
    write_report(tmp_path, m, cfg)
    report = (tmp_path / "report.md").read_text()
    assert "answered 0 of 8 calls (0.0%): incomplete" in report
    assert "No case has a complete set of verdicts" in report
    assert "no `winrates.png`" in report and not (tmp_path / "winrates.png").exists()
    assert not re.search(r"\bnan\b", report, re.I) and "n/a" not in report


def test_training_ids_read_every_split_of_an_export(pair_export, tmp_path):
    from gravity.evaluate.runner import training_ids
    from gravity.export import export_run

    rows = [
        json.loads(x) for x in (pair_export.parent / "run" / "pairs.jsonl").read_text().splitlines()
    ]
    all_users = {r["user_id"] for r in rows}
    export_run(pair_export.parent / "run", tmp_path / "pq", "parquet", test_size=0.25)
    for path in (pair_export, tmp_path / "pq"):
        users, books = training_ids([path])
        assert users == all_users and books == {r["item_id"] for r in rows}


_FORM_HARNESS = """
const values = JSON.parse(process.argv[2]);
global.document = {getElementById: (id) => ({value: values[id] ?? ""})};
%s
console.log(JSON.stringify(problems(values["rater"] ?? "")));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the form's script")
def test_human_form_script_refuses_blank_fields_and_repeated_ranks(tmp_path):
    """Runs the form's own JavaScript check (node, a stub document) on filled answers."""
    sheets = tmp_path / "sheets"
    export_sheets(_eval_dir(tmp_path), sheets)
    html = (sheets / "reader-r0.html").read_text()
    script = html.split("<script>")[1].split("</script>")[0]
    ids = re.findall(r'id="((?:rank|int)-[^"]+)"', html)
    ranks = [i for i in ids if i.startswith("rank-")]
    cases: dict[str, list[str]] = {}
    for rank_id in ranks:
        cases.setdefault(rank_id.rsplit("-", 1)[0], []).append(rank_id)

    def check(values: dict[str, str]) -> list[str]:
        harness = tmp_path / "harness.js"
        harness.write_text(_FORM_HARNESS % script)
        proc = subprocess.run(
            ["node", str(harness), json.dumps(values)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    good = {"rater": "ana"}
    for members in cases.values():
        for n, rank_id in enumerate(members, start=1):
            good[rank_id] = str(n)
            good["int-" + rank_id[len("rank-") :]] = "3"
    assert check(good) == []
    repeated = dict(good)
    first_case = next(iter(cases.values()))
    repeated[first_case[1]] = repeated[first_case[0]]  # two descriptions ranked the same
    assert any("each rank once" in p for p in check(repeated))
    blank = dict(good)
    blank["int-" + first_case[0][len("rank-") :]] = ""
    assert any("both needed" in p for p in check(blank))
    assert any("rater id" in p for p in check({**good, "rater": ""}))


def test_report_per_country_words_and_too_few_readers_once():
    from gravity.evaluate.report import markdown

    judge = {
        "calls": 12,
        "parsed": 12,
        "parse_rate": 1.0,
        "position_consistency": 0.5,
        "identical_pairs": 0,
        "excluded_cases": 0,
    }
    extra = {"cases": 3, "readers": 3, "leakage": {"checked_against": [], "notes": []}}
    m = _report_metrics([1.0] * 3, judge, min_readers=2) | extra
    m["length"]["mean_words_by_country"] = {"US": {"base": 41.0, "gravity": 77.0}}
    text = markdown(m, EvalConfig())
    us = text.split("### US (3 readers)")[1]
    assert "| 41 |" in us and "| 77 |" in us  # that country's lengths, not the overall 50/60
    few = markdown(_report_metrics([1.0] * 3, judge, min_readers=5) | extra, EvalConfig())
    us = few.split("### US (3 readers)")[1].split("##")[0]
    assert "Too few readers (n=3, fewer than min_readers=5) for any per-country figure." in us
    assert "|" not in us  # no table of cells that would all say the same


@pytest.mark.parametrize("gap", [2.2, 1 / 3, 4.0])
def test_position_bound_judge_leans_nowhere_at_any_strength(gap):
    """(p + 1 - p) / 2 is a hair off 0.5 in floats for many p: no pair may read as a lean (the
    judge would look like it agrees with the alignment score)."""
    from gravity.evaluate.metrics import agreement_with_alignment

    def first(prompt, labels):
        if labels[0] == "1":
            return {k: 0.0 for k in labels}
        return {k: (0.0 if i == 0 else -gap) for i, k in enumerate(labels)}

    cases = _cases(6)
    descriptions = {s: [f"text {i} by {s}" for i in range(6)] for s in SYSTEMS5}
    metrics, _, outcomes = _judge(cases, descriptions, first)
    assert all(v == 0.5 for o in outcomes for v in o.wins.values())
    rising = {c.id: {s: 0.1 * k for k, s in enumerate(sorted(SYSTEMS5))} for c in cases}
    assert agreement_with_alignment(outcomes, rising) == {"pairs": 0, "agreement": None, "p": None}
    assert metrics["overall"]["preference_gain"]["gravity"]["base"]["value"] == 0.0


@pytest.mark.parametrize(
    "bad",
    [{"A": math.nan, "B": -1.0}, {"A": math.inf, "B": -1.0}, {"A": -math.inf, "B": -math.inf}],
)
def test_unusable_label_scores_exclude_the_case_never_nan(bad):
    """A backend score that gives no probabilities (NaN, +inf, every label impossible) is a
    rejected verdict: its case is excluded and counted, and no NaN reaches the metrics."""
    cases = _cases(3)

    def judge(prompt, labels):
        if labels == ["A", "B"] and "[A]\ntext 1 by base" in prompt:  # case 1, one order
            return dict(bad)
        return prefers_good(prompt, labels) if "[A]" in prompt else {k: 0.0 for k in labels}

    texts = {s: [f"text {i} by {s}" for i in range(3)] for s in ("base", "gravity")}
    texts["gravity"] = [f"GOOD {i}" for i in range(3)]
    metrics, stats, outcomes = _judge(cases, texts, judge)
    assert stats["parse_rate"] < 1.0 and stats["excluded_cases"] == 1
    assert cases[1].id not in {o.case_id for o in outcomes} and len(outcomes) == 2
    dump = json.dumps(metrics)
    assert "NaN" not in dump and "Infinity" not in dump
