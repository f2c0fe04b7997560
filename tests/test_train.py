"""Training with real TRL trainers on a tiny random model (fast) and on the embedded model
(slow marker): parameters change, DPO reward margins grow, outputs reload and generate."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gravity.errors import GravityError
from gravity.llm import BackendConfig, ChatRequest, SamplingParams, make_backend
from gravity.train import TrainConfig, train
from gravity.train.config import cpu_group
from tests.fakes import child_env

ROOT = Path(__file__).resolve().parents[1]


def _pairs(path: Path, n: int = 4) -> Path:
    """A tiny preference set with short prompts: the chosen answer is always the same style."""
    rows = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"Describe book {i} for a reader who loves the sea."}]
        rows.append(
            {
                "prompt": prompt,
                "chosen": [
                    {
                        "role": "assistant",
                        "content": "Waves, salt and a ship: a voyage for sea lovers.",
                    }
                ],
                "rejected": [
                    {"role": "assistant", "content": "A book. It has pages and words in it."}
                ],
                "user_id": f"u{i}",
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _margins(summary: dict) -> list[float]:
    return [h["rewards/margins"] for h in summary["log_history"] if "rewards/margins" in h]


def test_dpo_full_changes_weights_and_margin_grows(tiny_model, tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl")
    cfg = TrainConfig(
        model=str(tiny_model),
        full=True,
        learning_rate=2e-3,
        num_train_epochs=6,
        per_device_train_batch_size=2,
        max_length=128,
    )
    summary = train("dpo", data, tmp_path / "out", cfg)
    margins = _margins(summary)
    assert len(margins) == summary["steps"] == 12
    assert margins[-1] > margins[0] and margins[-1] > 0
    before = load_file(tiny_model / "model.safetensors")
    after = load_file(tmp_path / "out" / "model.safetensors")
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2
    out = tmp_path / "out"
    for name in ("metrics.json", "train_config.yaml", "README.md", "tokenizer.json"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    assert "DPO (TRL DPOTrainer)" in card and "full fine-tuning" in card
    assert json.loads((out / "metrics.json").read_text())["steps"] == 12


def test_dpo_lora_changes_adapter_and_reloads_through_engine(tiny_model, tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl")
    cfg = TrainConfig(
        model=str(tiny_model), learning_rate=5e-3, num_train_epochs=4, max_length=128, merge=True
    )
    summary = train("dpo", data, tmp_path / "lora", cfg)
    margins = _margins(summary)
    assert margins[-1] > margins[0]
    adapter = load_file(tmp_path / "lora" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero in LoRA
    assert (tmp_path / "lora" / "merged" / "model.safetensors").is_file()
    # The adapter folder is a model name anywhere: base + adapter load transparently.
    with make_backend(BackendConfig(model=str(tmp_path / "lora"), dtype="float32")) as backend:
        (out,) = backend.generate(
            [ChatRequest.from_prompt("Describe a book.")],
            SamplingParams(max_new_tokens=8, temperature=0),
        )
        assert out.completion_tokens > 0
    merged = make_backend(BackendConfig(model=str(tmp_path / "lora" / "merged"), dtype="float32"))
    with merged:
        (m,) = merged.generate(
            [ChatRequest.from_prompt("Describe a book.")],
            SamplingParams(max_new_tokens=8, temperature=0),
        )
    assert m.text == out.text  # merged weights = base + adapter


def test_sft_trains_on_chosen(tiny_model, tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl")
    cfg = TrainConfig(model=str(tiny_model), learning_rate=5e-3, num_train_epochs=4, max_length=128)
    summary = train("sft", data, tmp_path / "sft", cfg)
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert losses[-1] < losses[0]
    adapter = load_file(tmp_path / "sft" / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())
    assert "SFT on chosen responses" in (tmp_path / "sft" / "README.md").read_text()


def test_trains_on_exported_dataset_as_is(tiny_model, pair_export, tmp_path):
    """The export's train split (with its metadata columns) feeds both trainers."""
    from datasets import load_from_disk
    from trl import DPOConfig, DPOTrainer

    ds = load_from_disk(str(pair_export))["train"]
    assert {"prompt", "chosen", "rejected", "record_id", "country", "facet"} <= set(ds.column_names)
    trainer = DPOTrainer(
        model=str(tiny_model),
        args=DPOConfig(
            output_dir=str(tmp_path / "raw"),
            max_steps=1,
            per_device_train_batch_size=2,
            report_to="none",
            save_strategy="no",
            bf16=False,
        ),
        train_dataset=ds,
    )
    trainer.train()
    assert trainer.state.global_step == 1
    summary = train(
        "sft", pair_export, tmp_path / "sft", TrainConfig(model=str(tiny_model), max_steps=1)
    )
    assert summary["steps"] == 1


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda d: (d / "x.jsonl").write_text('{"prompt": "a", "chosen": "b"}\n'),
            "missing column(s) rejected",
        ),
        (lambda d: None, "no such dataset"),
        (lambda d: (d / "x.csv").write_text("a,b\n"), "unsupported data file"),
    ],
)
def test_bad_data_is_a_clear_error(tiny_model, tmp_path, make, message):
    make(tmp_path)
    target = next(iter(tmp_path.iterdir()), tmp_path / "missing.jsonl")
    with pytest.raises(GravityError, match=re.escape(message)):
        train("dpo", target, tmp_path / "out", TrainConfig(model=str(tiny_model), max_steps=1))


def test_bad_overrides_and_lengths(tiny_model, tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl")
    with pytest.raises(GravityError, match="'betta' is not a DPOConfig field; did you mean beta"):
        train(
            "dpo",
            data,
            tmp_path / "o",
            TrainConfig(model=str(tiny_model), trl_overrides={"betta": 1}),
        )
    with pytest.raises(GravityError, match="no example fits max_length=32"):
        train(
            "sft",
            data,
            tmp_path / "o",
            TrainConfig(
                model=str(tiny_model),
                max_length=32,
                trl_overrides={"truncation_mode": "keep_start"},
            ),
        )


def test_cli_train_and_flags(tiny_model, tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gravity",
            "train",
            "dpo",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "--model",
            str(tiny_model),
            "--max-steps",
            "1",
            "--max-length",
            "128",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "dpo: 1 steps on 4 examples" in run.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "gravity",
            "train",
            "dpo",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o2"),
            "--model",
            str(tiny_model),
            "--max-length",
            "8",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert (
        bad.returncode == 2
        and "--max-length: Input should be greater than or equal to 32" in bad.stderr
    )


def test_two_process_accelerate_launch(tiny_model, tmp_path):
    """Two launched processes on a CPU machine train as ONE group, each on its share.

    Proof of the group, not of two lucky independent trainings: both ranks report world size 2,
    and one epoch over 4 pairs at batch 1 takes 2 steps (each rank sees 2 pairs); two processes
    training alone would each take 4 steps, and both would write the shared outputs.
    """
    data = _pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        str(_free_port()),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "gravity",
        "train",
        "dpo",
        "--data",
        str(data),
        "--out",
        str(out),
        "--model",
        str(tiny_model),
        "--num-train-epochs",
        "1",
        "--max-length",
        "128",
        "--per-device-train-batch-size",
        "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train: process 1 of 2" in run.stdout and "train: process 2 of 2" in run.stdout
    assert run.stdout.count("dpo: 2 steps on 4 examples") == 2  # both ranks, one shared run
    assert (out / "adapter_model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["steps"] == 2  # 4 pairs / (2 processes x batch 1): data was sharded
    json.loads((out / "adapter_config.json").read_text())  # written whole, once


def test_cpu_group_only_for_several_processes_without_cuda(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert cpu_group() is False
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert cpu_group() is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cpu_group() is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cpu_group() is False  # CUDA: accelerate forms the NCCL group itself


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_embedded_model_dpo_and_sft(tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl", n=8)
    summary = train(
        "dpo",
        data,
        tmp_path / "dpo",
        TrainConfig(num_train_epochs=2, learning_rate=5e-4, max_length=128),
    )
    margins = _margins(summary)
    assert margins[-1] > margins[0]
    summary = train("sft", data, tmp_path / "sft", TrainConfig(max_steps=4, max_length=128))
    assert summary["steps"] == 4
    with make_backend(BackendConfig(model=str(tmp_path / "dpo"))) as backend:
        (out,) = backend.generate(
            [ChatRequest.from_prompt("Describe Moby-Dick.")], SamplingParams(max_new_tokens=16)
        )
        assert out.text.strip()


def _adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def _repro_cfg(tiny_model: Path, **kw) -> TrainConfig:
    # lora_dropout > 0 draws random masks every step: those must be seeded too.
    base = {"model": str(tiny_model), "max_steps": 2, "max_length": 128, "lora_dropout": 0.1}
    return TrainConfig(**{**base, "learning_rate": 5e-3, **kw})


def test_same_seed_gives_bit_identical_adapter_and_another_seed_does_not(tiny_model, tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl")
    first = train("dpo", data, tmp_path / "a", _repro_cfg(tiny_model))
    torch.manual_seed(12345)  # the caller's generator state must not leak into training
    second = train("dpo", data, tmp_path / "b", _repro_cfg(tiny_model))
    other = train("dpo", data, tmp_path / "c", _repro_cfg(tiny_model, seed=1))
    a, b, c = (_adapter(tmp_path / n) for n in "abc")
    assert a.keys() == b.keys() == c.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert first["fingerprint"] == second["fingerprint"] != other["fingerprint"]
    stamp = json.loads((tmp_path / "a" / "fingerprint.json").read_text())
    assert stamp["id"] == first["fingerprint"] and stamp["config"]["seed"] == 0
    # 2 steps < save_steps (50): no checkpoint was written, and no empty folder is left behind.
    assert not (tmp_path / "a" / "checkpoints").exists()


_KILL_AT_STEP_3 = """
import os, signal, sys
from transformers import TrainerCallback
from gravity.train import TrainConfig, train

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind, as with kill -9

cfg = TrainConfig.model_validate_json(sys.argv[3])
train("dpo", sys.argv[1], sys.argv[2], cfg, callbacks=[Kill()])
"""


def test_killed_training_resumes_from_its_checkpoint_to_the_same_weights(tiny_model, tmp_path):
    """kill -9 after step 3 with checkpoints every 2 steps: the rerun resumes from checkpoint-2
    and ends with the weights of an uninterrupted run; a changed config never resumes."""
    data = _pairs(tmp_path / "pairs.jsonl")
    cfg = _repro_cfg(tiny_model, max_steps=4, save_steps=2)
    straight = train("dpo", data, tmp_path / "straight", cfg)
    assert straight["resumed_from"] is None and straight["steps"] == 4
    out = tmp_path / "killed"
    env = child_env()
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_AT_STEP_3, str(data), str(out), cfg.model_dump_json()],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    saved = sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*"))
    assert saved == ["checkpoint-2"]
    assert not (out / "fingerprint.json").exists()  # not a finished training
    stale = tmp_path / "stale"
    shutil.copytree(out, stale)

    resumed = train("dpo", data, out, cfg)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 4
    assert [h["step"] for h in resumed["log_history"] if "loss" in h][-2:] == [3, 4]
    a, b = _adapter(tmp_path / "straight"), _adapter(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (out / "checkpoints").exists()  # the finished model supersedes them

    # Another config (here max_steps) is another training: its checkpoint is discarded.
    changed = train("dpo", data, stale, cfg.model_copy(update={"max_steps": 2}))
    assert changed["resumed_from"] is None and changed["steps"] == 2
    assert not (stale / "checkpoints").exists()


def test_portable_model_names(tiny_model):
    from gravity.llm.embedded import embedded_checkpoint
    from gravity.train import portable_model_name

    assert portable_model_name("embedded") == portable_model_name("SmolLM2") == "smollm2"
    assert portable_model_name(str(embedded_checkpoint())) == "smollm2"  # the cache path
    assert portable_model_name("HuggingFaceTB/SmolLM2-360M-Instruct") == (
        "HuggingFaceTB/SmolLM2-360M-Instruct"
    )
    assert portable_model_name(str(tiny_model)) == str(tiny_model.resolve())


def test_adapter_on_embedded_model_records_no_path_and_loads_from_a_copy(tmp_path):
    """The adapter names its base 'smollm2' (not the user's cache path), so a copy of the folder
    in another place (another machine) loads and generates exactly as the original."""
    from gravity.llm.embedded import cache_root, embedded_checkpoint

    data = _pairs(tmp_path / "pairs.jsonl", n=2)
    out = tmp_path / "trained"
    train("sft", data, out, TrainConfig(max_steps=1, max_length=64, learning_rate=1e-2))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2"
    assert "base_model: smollm2" in (out / "README.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["base_model"] == "smollm2"
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".md", ".yaml", ".jinja"}:
            text = path.read_text()
            for local in (str(embedded_checkpoint()), str(cache_root())):
                assert local not in text, path

    moved = tmp_path / "elsewhere" / "shared-adapter"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    from safetensors import safe_open

    name = "model.layers.0.self_attn.q_proj.weight"
    with make_backend(BackendConfig(model=str(moved), dtype="float32")) as backend:
        (result,) = backend.generate(
            [ChatRequest.from_prompt("Describe a book about the sea.")],
            SamplingParams(max_new_tokens=4, temperature=0),
        )
        loaded = backend.model.state_dict()[name].cpu()  # on a GPU machine, from its device
    assert result.completion_tokens > 0
    with safe_open(str(embedded_checkpoint() / "model.safetensors"), "pt") as base:
        assert not torch.equal(loaded, base.get_tensor(name))  # the adapter was merged in
