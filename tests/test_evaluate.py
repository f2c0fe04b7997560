"""Evaluation: metrics on hand-made rankings, bootstrap, judge parsing, shuffling undone, human
sheets round trip, held-out leakage, the demo config, and `gravity run` end to end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from gravity.books import load_catalog
from gravity.config import RunConfig, load_yaml_model
from gravity.errors import GravityError
from gravity.evaluate.config import EvalConfig, SystemSpec
from gravity.evaluate.human import export_sheets, import_rankings
from gravity.evaluate.judge import Verdict, labels_for, parse_verdict, permutation
from gravity.evaluate.metrics import (
    Judgment,
    bootstrap_ci,
    mean_interest,
    pairwise_win_rate,
    preference_gain,
    top1_rates,
)
from gravity.evaluate.runner import Case, check_held_out, judge_cases
from gravity.llm.base import Completion
from gravity.llm.engine import Engine, Reject
from gravity.resources import _PKG
from tests.fakes import ScriptedBackend

ROOT = _PKG.parent
S = ["X", "Y", "Z"]
HAND = [
    Judgment("c1", "r1", "US", ("X", "Y", "Z"), {"X": 4, "Y": 2}),
    Judgment("c1", "r1", "US", ("Y", "X", "Z"), {"X": 5}),
    Judgment("c2", "r2", "BR", ("Z", "X", "Y")),
]


def test_top1_with_ties_split():
    assert top1_rates(HAND, S) == {"X": 0.25, "Y": 0.25, "Z": 0.5}


def test_pairwise_and_gain():
    assert pairwise_win_rate(HAND, "X", "Y") == 0.75  # c1 tie (0.5), c2 X above Y (1)
    assert preference_gain(HAND, "X", "Y") == 25.0
    assert preference_gain(HAND, "X", "Z") == 0.0  # c1 X wins, c2 Z wins
    assert preference_gain(HAND, "Y", "X") == -25.0


def test_interest_means():
    got = mean_interest(HAND, S)
    assert got["X"] == 4.5 and got["Y"] == 2.0 and math.isnan(got["Z"])


def test_bootstrap_is_deterministic_and_brackets_the_estimate():
    many = [
        Judgment(f"c{i}", f"r{i}", "US", ("X", "Y", "Z") if i % 3 else ("Y", "X", "Z"))
        for i in range(30)
    ]
    stat = lambda js: top1_rates(js, S)["X"]  # noqa: E731
    a = bootstrap_ci(many, stat, n_boot=300, seed=7)
    assert a == bootstrap_ci(many, stat, n_boot=300, seed=7)
    assert a != bootstrap_ci(many, stat, n_boot=300, seed=8)
    assert a[0] <= stat(many) <= a[1] and 0 < a[0] < a[1] < 1


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            '{"ranking": ["B", "A", "C"], "interest": {"A": 3, "B": 5, "C": 1}}',
            Verdict(("B", "A", "C"), {"A": 3, "B": 5, "C": 1}),
        ),
        (
            'Sure: {"ranking": ["[C]", "a", "B"], "interest": {"[A]": 9, "B": 2}}',
            Verdict(("C", "A", "B"), {"B": 2}),
        ),
        ("My ranking: B > C > A", Verdict(("B", "C", "A"), {})),
    ],
)
def test_parse_verdict(text, expected):
    assert parse_verdict(Completion(text=text), ["A", "B", "C"]) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I like the first one",
        '{"ranking": ["A"]}',
        "A and B",
        '{"ranking": ["A", "A", "B"]} so C, B, A',
    ],
)
def test_parse_verdict_rejects(text):
    result = parse_verdict(Completion(text=text), ["A", "B", "C"])
    assert isinstance(result, Reject) and result.kind == "judge_unparsable"


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


class _LabelA(ScriptedBackend):
    """A judge that always ranks the labels in order (prefers label A)."""

    def generate(self, requests, params, seeds=None):
        out = []
        for request in requests:
            labels = [c for c in "ABCDE" if f"[{c}]" in request.messages[-1].content]
            out.append(
                Completion(
                    text=json.dumps({"ranking": labels, "interest": dict.fromkeys(labels, 3)})
                )
            )
        return out


class _PrefersGood(ScriptedBackend):
    """A judge that puts the candidate whose text says GOOD first."""

    def generate(self, requests, params, seeds=None):
        out = []
        for request in requests:
            content = request.messages[-1].content
            labels = [c for c in "ABCDE" if f"[{c}]" in content]
            good = next(c for c in labels if f"[{c}]\nGOOD" in content)
            rest = [c for c in labels if c != good]
            out.append(Completion(text=json.dumps({"ranking": [good, *rest]})))
        return out


def test_fixed_position_judge_gives_equal_wins():
    cases = _cases()
    systems = ["base", "prompt", "sft", "naive", "gravity"]
    descriptions = {s: [f"text by {s}"] * len(cases) for s in systems}
    cfg = EvalConfig(systems=[SystemSpec(name=s, kind="base") for s in systems])
    judgments, rejects = judge_cases(
        cases, descriptions, cfg, Engine(_LabelA(), None, progress=False)
    )
    assert not rejects and len(judgments) == len(cases) * 5
    assert top1_rates(judgments, systems) == {s: pytest.approx(0.2) for s in systems}


def test_shuffling_is_undone():
    cases = _cases()
    systems = ["base", "prompt", "gravity"]
    descriptions = {s: [("GOOD " if s == "gravity" else "meh ") + s] * len(cases) for s in systems}
    cfg = EvalConfig(systems=[SystemSpec(name=s, kind="base") for s in systems], permutations=3)
    judgments, _ = judge_cases(
        cases, descriptions, cfg, Engine(_PrefersGood(), None, progress=False)
    )
    assert top1_rates(judgments, systems)["gravity"] == 1.0
    assert preference_gain(judgments, "gravity", "base") == 50.0


def test_judge_rejects_are_recorded():
    cases = _cases(2)
    systems = ["base", "prompt"]
    cfg = EvalConfig(systems=[SystemSpec(name=s, kind="base") for s in systems])
    engine = Engine(ScriptedBackend(script=["no idea"] * 10), None, progress=False)
    judgments, rejects = judge_cases(cases, {s: ["t", "t"] for s in systems}, cfg, engine)
    assert judgments == [] and len(rejects) == 4 and rejects[0]["reason"] == "judge_unparsable"


def _eval_dir(tmp_path: Path) -> Path:
    d = tmp_path / "eval"
    d.mkdir()
    rows = []
    for i, country in enumerate(["US", "US", "BR"]):
        rows.append(
            {
                "case_id": f"r{i}:b",
                "reader_id": f"r{i}",
                "country": country,
                "book_id": "b",
                "book_title": "Emma, or <Love>",
                "descriptions": {
                    "base": f"plain {i}",
                    "gravity": f'for you, "{i}"',
                    "prompt": f"p {i}",
                },
                "alignment": {"base": 0.0, "gravity": 0.1, "prompt": None},
            }
        )
    (d / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_human_sheets_round_trip(tmp_path):
    eval_dir = _eval_dir(tmp_path)
    sheets = tmp_path / "sheets"
    assert export_sheets(eval_dir, sheets) == 3
    html = (sheets / "reader-r0.html").read_text()
    assert "Emma, or &lt;Love&gt;" in html and "gravity" not in html  # anonymous labels
    key = json.loads((sheets / "key.json").read_text())
    with open(sheets / "sheets.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and {r["rank"] for r in rows} == {""}
    for r in rows:  # a rater who always puts gravity first, then base, then prompt
        system = key[r["case_id"]][r["label"]]
        r["rank"] = {"gravity": 1, "base": 2, "prompt": 3}[system]
        r["interest"] = {"gravity": 5, "base": 3, "prompt": 1}[system]
    filled = tmp_path / "filled.csv"
    with open(filled, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    metrics = import_rankings(eval_dir, sheets, [filled], tmp_path / "human", n_boot=50)
    overall = metrics["overall"]
    assert overall["top1"]["gravity"]["value"] == 1.0
    assert overall["preference_gain"]["base"]["prompt"]["value"] == 50.0
    assert overall["interest"] == {"base": 3.0, "gravity": 5.0, "prompt": 1.0}
    assert set(metrics["by_country"]) == {"US", "BR"}
    assert (
        json.loads((tmp_path / "human" / "human-metrics.json").read_text())["human"]["judgments"]
        == 3
    )


def test_human_import_errors(tmp_path):
    eval_dir = _eval_dir(tmp_path)
    sheets = tmp_path / "sheets"
    export_sheets(eval_dir, sheets)
    with open(sheets / "sheets.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["rank"] = "1"  # every label ranked 1
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(GravityError, match=r"ranks must be 1\.\.3"):
        import_rankings(eval_dir, sheets, [bad], tmp_path / "h")
    rows[0]["rank"] = "first"
    with open(bad, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(GravityError, match=r"bad.csv:2: rank: 'first' is not a number"):
        import_rankings(eval_dir, sheets, [bad], tmp_path / "h")


def test_held_out_leakage_is_refused(tmp_path):
    cases = _cases(2)
    run = tmp_path / "run"
    run.mkdir()
    (run / "pairs.jsonl").write_text(
        json.dumps({"user_id": cases[0].reader.id, "book_id": "other"}) + "\n"
    )
    with pytest.raises(GravityError, match=f"readers \\['{cases[0].reader.id}'\\]"):
        check_held_out(cases, [run])
    (run / "pairs.jsonl").write_text(
        json.dumps({"user_id": "someone", "book_id": cases[0].book.id}) + "\n"
    )
    with pytest.raises(GravityError, match="books"):
        check_held_out(cases, [run])
    (run / "pairs.jsonl").write_text(json.dumps({"user_id": "someone", "book_id": "other"}) + "\n")
    check_held_out(cases, [run])


def test_demo_config_is_valid():
    cfg = load_yaml_model(ROOT / "configs" / "demo.yaml", RunConfig)
    assert cfg.modes == ["gravity", "naive"] and cfg.train_systems == ["sft", "naive", "gravity"]
    assert cfg.generate.backend.model == "smollm2" and cfg.train.model == "smollm2"
    assert {p for p in cfg.profiles.countries} == {"US", "BR", "JP", "IN"}


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
        "heldout_books": 10,
        "generate": {
            "facets": ["values"],
            "max_books": 1,
            "description_tokens": 96,
            "scenario_tokens": 48,
            "filters": {"min_words": 5},
        },
        "train": {"model": str(tiny_model), "max_steps": 1, "max_length": 640},
        "evaluate": {
            "books_per_reader": 1,
            "permutations": 1,
            "max_new_tokens": 24,
            "judge_max_new_tokens": 32,
            "bootstrap": 50,
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(
        [sys.executable, "-m", "gravity", "run", str(path)], capture_output=True, text=True, env=env
    )
    assert first.returncode == 0, first.stderr[-3000:]
    for name in ("report.md", "metrics.json", "winrates.png", "alignment.png", "cases.jsonl"):
        assert (out / "eval" / name).is_file(), name
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["systems"] == ["base", "prompt", "sft", "naive", "gravity"]
    assert metrics["cases"] == 2 and metrics["readers"] == 2
    assert metrics["judge"]["parsed"] + metrics["judge"]["rejected"] == 2
    assert set(metrics["by_country"]) == {"US", "BR"}
    report = (out / "eval" / "report.md").read_text()
    assert "close to random" in report and "## Per country" in report
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
    assert second.stdout.count("already trained") == 3
    assert json.loads((out / "eval" / "metrics.json").read_text())["overall"] == metrics["overall"]


def test_report_reading_is_honest_about_the_judge():
    from types import SimpleNamespace

    from gravity.evaluate.report import _reading, compute_metrics

    systems = ["base", "gravity"]
    cases = [
        SimpleNamespace(id=f"r{i}:b", reader=SimpleNamespace(id=f"r{i}", country="US"))
        for i in range(4)
    ]
    alignment = {"base": [0.0] * 4, "gravity": [0.1] * 4}

    def metrics(rankings):
        js = [Judgment(c.id, c.reader.id, "US", r) for c, r in zip(cases, rankings)]
        return compute_metrics(js, cases, systems, alignment, 50, 0)

    few = metrics([("gravity", "base")])  # one judged reader
    assert "usable rankings for 1 reader(s) only" in _reading(few, systems)[0]
    tied = metrics([("gravity", "base"), ("base", "gravity")] * 2)
    assert "ranks no system first more often" in _reading(tied, systems)[0]
    clear = metrics([("gravity", "base")] * 4)
    text = "\n".join(_reading(clear, systems))
    assert "`gravity` is ranked first most often (100.0% of cases)" in text
    assert "`gravity` vs `base`: preference gain +50.0 points [+50.0, +50.0]: better than" in text
    assert "`gravity` writes the most reader-specific texts (0.100)" in text


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
        assert users == all_users and books == {r["book_id"] for r in rows}
