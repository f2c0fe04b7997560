"""``gravity run --dry-run``: the plan's counts against counts worked out by hand from the config,
and the promise that planning loads no model and writes nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gravity.books import load_catalog
from gravity.cli import app
from gravity.config import RunConfig
from gravity.errors import GravityError
from gravity.io import load_yaml_model
from gravity.llm.base import ChatRequest
from gravity.plan import CHARS_PER_TOKEN, Plan, TokenCounter, build_plan, render_plan

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
COUNTRIES = ["BR", "IN", "JP", "US"]


def _config(name: str, out: Path, **update) -> RunConfig:
    cfg = load_yaml_model(CONFIGS / name, RunConfig)
    return cfg.model_copy(update={"out_dir": out, **update})


def _step(plan: Plan, stage: str, step: str):
    found = [s for s in plan.steps if s.stage == stage and s.step.startswith(step)]
    assert len(found) == 1, (stage, step, [(s.stage, s.step) for s in plan.steps])
    return found[0]


def test_demo_plan_counts_by_hand(tmp_path, no_models) -> None:
    out = tmp_path / "run"
    plan = build_plan(_config("demo.yaml", out))
    # demo.yaml: 1 training and 2 held-out readers per country; 12 of the starter catalog held
    assert plan.readers == {
        "training": dict.fromkeys(COUNTRIES, 1),
        "heldout": dict.fromkeys(COUNTRIES, 2),
    }
    n_catalog = len(load_catalog(None))
    assert plan.books == {"training": n_catalog - 12, "heldout": 12}
    # slots: 4 readers x 2 books x 1 facet (values) x 1 scenario, in each mode
    assert plan.modes == {"gravity": {"slots": 8, "pairs": 8}, "naive": {"slots": 8, "pairs": 8}}
    g, n = "synthesis (gravity)", "synthesis (naive)"
    assert _step(plan, g, "scenarios").calls == 8
    assert _step(plan, g, "scenarios").completion_tokens == 8 * 64  # scenario_tokens: 64
    assert _step(plan, g, "chosen").calls == 8
    assert _step(plan, g, "rejected descriptions (generic)").completion_tokens == 8 * 128
    assert _step(plan, n, "candidates").calls == 2 * 8
    assert _step(plan, n, "quality judgments").calls == 2 * 8  # both orders
    # likelihood judging (transformers reads label probabilities): nothing generated
    assert _step(plan, n, "quality judgments").completion_tokens == 0
    # evaluation: 8 held-out readers x 1 book; base, prompt + 3 trained systems
    systems = ["base", "prompt", "sft", "naive", "gravity"]
    assert plan.evaluation["cases"] == 8
    assert plan.evaluation["systems"] == systems
    pairwise = _step(plan, "evaluation", "pairwise")
    assert pairwise.calls == 8 * math.comb(5, 2) * 2 == 160
    assert _step(plan, "evaluation", "interest").calls == 8 * 5
    for system in systems:
        step = _step(plan, "evaluation", f"descriptions [{system}]")
        assert (step.calls, step.completion_tokens) == (8, 8 * 128)
    # the base system's prompt has no profile: shorter than the prompted systems'
    base = _step(plan, "evaluation", "descriptions [base]").prompt_tokens
    assert base < _step(plan, "evaluation", "descriptions [prompt]").prompt_tokens
    assert {t.system: t.steps for t in plan.training} == {"sft": 4, "naive": 4, "gravity": 4}
    # every stage runs the embedded model on transformers: every step has a time
    assert plan.total_seconds is not None and plan.total_seconds > 0
    assert plan.total_seconds == pytest.approx(sum(plan.stage_seconds.values()), abs=0.5)
    assert not out.exists()


def test_training_steps_follow_the_trainer_arithmetic(tmp_path, no_models) -> None:
    cfg = _config("demo.yaml", tmp_path / "run")
    # 8 pairs, batch 2 -> 4 batches; accumulation 3 -> ceil(4 / 3) = 2 steps per epoch;
    # 2.5 epochs -> ceil(5.0) = 5 steps; and a max_steps cap wins over epochs
    train = cfg.train.model_copy(
        update={"max_steps": -1, "gradient_accumulation_steps": 3, "num_train_epochs": 2.5}
    )
    plan = build_plan(cfg.model_copy(update={"train": train}))
    assert {t.steps for t in plan.training} == {5}
    train = train.model_copy(update={"trl_overrides": {"max_steps": 7}})
    plan = build_plan(cfg.model_copy(update={"train": train, "train_systems": ["gravity"]}))
    assert [(t.system, t.steps) for t in plan.training] == [("gravity", 7)]


def test_ranking_protocol_and_configured_rates(tmp_path, no_models) -> None:
    cfg = _config("demo.yaml", tmp_path / "run")
    evaluate = cfg.evaluate.model_copy(update={"protocol": "ranking"})
    plan_cfg = cfg.plan.model_copy(
        update={"tokens_per_s": 100.0, "prompt_tokens_per_s": 1000.0, "train_pairs_per_s": 0.5}
    )
    plan = build_plan(cfg.model_copy(update={"evaluate": evaluate, "plan": plan_cfg}))
    # one call per rotation: 5 systems -> 5 rotations for each of the 8 cases
    assert _step(plan, "evaluation", "ranking").calls == 8 * 5
    step = _step(plan, "synthesis (gravity)", "scenarios")
    expected = step.completion_tokens / 100 + step.prompt_tokens / 1000
    assert step.seconds == pytest.approx(expected, abs=0.05)
    # 4 steps x batch 2 = 8 pairs at 0.5 pairs/s
    assert {t.seconds for t in plan.training} == {16.0}


def test_unknown_model_counts_characters_over_four() -> None:
    counter = TokenCounter()
    request = ChatRequest.from_prompt("x" * 41)
    assert counter.count(request, "no-such-org/no-such-model") == math.ceil(41 / CHARS_PER_TOKEN)
    assert "characters / 4" in counter.methods["no-such-org/no-such-model"]


def test_paper_plans_without_vllm(tmp_path, monkeypatch, no_models) -> None:
    monkeypatch.setattr("gravity.plan._installed", lambda module: module != "vllm")
    cfg = _config("paper.yaml", tmp_path / "paper")
    plan = build_plan(cfg)
    assert plan.readers == {
        "training": dict.fromkeys(COUNTRIES, 80),
        "heldout": dict.fromkeys(COUNTRIES, 20),
    }
    # 320 readers x 3 books x 4 facets x 1 scenario
    assert plan.modes["gravity"] == {"slots": 3840, "pairs": 3840}
    judge = _step(plan, "evaluation", "pairwise")
    assert judge.calls == 80 * 2 * math.comb(5, 2) * 2  # 160 cases
    # constrained judging on vLLM generates an answer of at most judge_max_new_tokens
    assert judge.completion_tokens == judge.calls * cfg.evaluate.judge_max_new_tokens
    assert any("vllm is not installed" in w for w in plan.warnings)
    assert plan.total_seconds is None  # no measured figure for an 8B model on a GPU
    assert not (tmp_path / "paper").exists()


def test_study_config_meets_its_sizing(tmp_path, no_models) -> None:
    cfg = _config("study.yaml", tmp_path / "study")
    plan = build_plan(cfg)
    assert all(plan.readers["heldout"][c] >= 8 for c in COUNTRIES)
    assert cfg.evaluate.items_per_reader >= 2
    assert sorted(cfg.generate.facets) == ["culture", "interests", "personality", "values"]
    # 2.3 h when it ran; the controls every evaluation now has add about 16 minutes
    assert plan.total_seconds is not None and plan.total_seconds < 2.75 * 3600


def test_powered_study_config_meets_its_sizing(tmp_path, no_models) -> None:
    """configs/study-powered.yaml: at least 200 held-out readers, 40 per country, controls on,
    a smallest detectable alignment difference of at most 0.008 from the CPU study's reader and
    item variance, and an estimate of at most 5 h on 2 cores."""
    from gravity.evaluate.power import detectable

    cfg = _config("study-powered.yaml", tmp_path / "powered")
    plan = build_plan(cfg)
    assert all(plan.readers["heldout"][c] >= 40 for c in COUNTRIES)
    assert sum(plan.readers["heldout"].values()) >= 200
    assert cfg.evaluate.controls == "all"
    assert plan.total_seconds is not None and plan.total_seconds <= 5 * 3600
    line = next(x for x in plan.power if x.startswith("gravity - base, alignment:"))
    shown = float(line.split("smallest effect detectable at 200 readers ")[1].split()[0])
    sd = float(line.split("per-reader SD ")[1].split(")")[0])  # readers only, by hand
    assert shown == pytest.approx(detectable(sd, 200), rel=1e-3)
    # readers share the held-out items, whose variance more readers do not shrink: the figure
    # the size is chosen by is the two-way one, from the reference's per-case values
    two_way = next(x for x in plan.power if "readers sharing 36 held-out items" in x)
    assert two_way.startswith("gravity - base, alignment")
    assert float(two_way.split("at 200 readers ")[1].split()[0]) <= 0.008
    assert not (tmp_path / "powered").exists()


def test_cli_dry_run_prints_and_writes_nothing(tmp_path, no_models) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["run", str(CONFIGS / "demo.yaml"), "--dry-run", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "pairwise judgments" in result.stdout and "estimate" in result.stdout
    shown = CliRunner().invoke(
        app, ["run", str(CONFIGS / "demo.yaml"), "--dry-run", "--json", "--out", str(out)]
    )
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["evaluation"]["judge_calls"] == 160
    assert not out.exists()


@pytest.mark.parametrize(
    "yaml_text, blamed",
    [
        ("heldout_items: 5000\n", "heldout_items"),
        ("modes: [gravity, bogus]\n", "modes"),
        ("generate: {facets: []}\n", "facets"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, yaml_text, blamed) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"out_dir: {tmp_path / 'run'}\n{yaml_text}")
    result = CliRunner().invoke(app, ["run", str(config), "--dry-run"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and blamed in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_json_needs_dry_run(tmp_path) -> None:
    result = CliRunner().invoke(app, ["run", str(CONFIGS / "demo.yaml"), "--json"])
    assert result.exit_code == 2 and "--dry-run" in result.stderr


def test_readers_from_events_are_counted_and_so_are_their_inference_calls(
    tmp_path, no_models
) -> None:
    from gravity.events.importers import import_events

    events = tmp_path / "events"
    import_events("bookcrossing", [Path(__file__).parent / "fixtures/events/bookcrossing"], events)
    cfg = _config("bookcrossing.yaml", tmp_path / "run", catalog=events)
    for side in ("profiles", "heldout"):
        stage = getattr(cfg, side)
        # LLM steps on (the dry run must still load no model), and no reader-count limit
        infer = stage.infer.model_copy(
            update={
                "text_inference": True,
                "tag_items": True,
                "max_users": None,
                "max_users_per_country": None,
                "min_events": 1,
            }
        )
        cfg = cfg.model_copy(
            update={side: stage.model_copy(update={"events": events, "infer": infer})}
        )
    plan = build_plan(cfg)
    assert sum(plan.readers["training"].values()) > 0
    assert sum(plan.readers["heldout"].values()) > 0
    assert any("profiles.infer" in w and "an upper bound" in w for w in plan.warnings)
    infer_steps = {(s.stage, s.step): s.calls for s in plan.steps if "(infer)" in s.stage}
    assert infer_steps[("profiles (infer)", "tag items")] > 0
    assert infer_steps[("heldout (infer)", "tag items")] > 0
    assert not (tmp_path / "run").exists()


def test_power_from_a_reference_run(tmp_path, no_models) -> None:
    """The dry run says what the config's held-out readers could detect, from the per-reader
    SDs of a reference evaluation: the same figures as the power module for that many readers."""
    from gravity.config import PlanConfig
    from gravity.evaluate.power import detectable, sd_from_ci

    reference = Path(__file__).parents[1] / "docs/results/study-cpu/metrics.json"
    cfg = _config("demo.yaml", tmp_path / "run", plan=PlanConfig(reference=reference))
    plan = build_plan(cfg)
    readers = sum(plan.readers["heldout"].values())
    cell = json.loads(reference.read_text())["overall"]["paired"]["base"]["alignment"]
    sd = sd_from_ci(cell["ci"], cell["n"])
    (line,) = [p for p in plan.power if p.startswith("gravity - base, alignment")]
    assert f"detectable at {readers} readers {detectable(sd, readers):.4g}" in line
    assert plan.power[0] == f"power, from {reference}:"
    assert "power, from" in render_plan(plan)
    bad = tmp_path / "metrics.json"
    bad.write_text("{}")
    with pytest.raises(GravityError, match="plan.reference: .*metrics.json: not an evaluation"):
        build_plan(cfg.model_copy(update={"plan": PlanConfig(reference=bad)}))
