"""Running a training: data, TRL trainer, resume, outputs."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import yaml

from gravity.errors import GravityError
from gravity.train.card import _model_card
from gravity.train.config import TrainConfig, _trl_args, cpu_group
from gravity.train.data import training_rows
from gravity.train.fingerprint import (
    CHECKPOINTS,
    FINGERPRINT_NAME,
    _checkpoints,
    _clear_outputs,
    _fingerprint,
    _fingerprint_callback,
    portable_model_name,
)


def process_state() -> Any:
    """accelerate's process state for this training, the same object for every caller.

    A launcher (``accelerate launch``, ``torchrun``) that starts several processes on a machine
    without CUDA must make them one CPU group (gloo): accelerate only does so when asked for the
    CPU, and otherwise leaves each process alone as the main process of a group of one, so that
    every process trains on all the data and writes the shared outputs at the same time. Raises
    when the launcher's world size and the group's disagree.
    """
    from accelerate import PartialState

    state = PartialState(cpu=cpu_group())
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if state.num_processes != launched:
        raise GravityError(
            f"train: launched as {launched} processes, but they formed a group of "
            f"{state.num_processes} ({state.distributed_type}); each would train alone"
        )
    return state


def _say(message: str) -> None:
    if process_state().is_main_process:
        print(message, flush=True)


def train(
    kind: Literal["dpo", "sft"],
    data: str | Path,
    out: str | Path,
    cfg: TrainConfig | None = None,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Train and save to ``out``: model or adapter, tokenizer, config, metrics, model card and
    ``fingerprint.json``; resumes from ``out/checkpoints`` when they belong to this training.

    ``callbacks``: extra transformers ``TrainerCallback`` objects. Returns the summary written
    to ``out/metrics.json``.
    """
    from gravity.llm.hf import adapter_base, resolve_model

    cfg = cfg or TrainConfig()
    data, out = Path(data), Path(out)
    dataset = training_rows(kind, data)
    base = resolve_model(cfg.model)
    if adapter_base(base) is not None:
        raise GravityError(
            f"--model: '{cfg.model}' is a LoRA adapter; train from a full model "
            "(use a --merge output)"
        )
    fingerprint = _fingerprint(kind, cfg, dataset, base)
    state = process_state()
    if state.num_processes > 1:
        print(f"train: process {state.process_index + 1} of {state.num_processes}", flush=True)
    resume = _prepare_folder(out, fingerprint)
    trainer, tokenizer = _trainer(kind, cfg, dataset, base, out, fingerprint, callbacks)
    if len(trainer.train_dataset) == 0:
        raise GravityError(
            f"{data}: no example fits max_length={cfg.max_length} tokens after tokenization; "
            "raise --max-length"
        )
    start = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.monotonic() - start
    trainer.save_model(str(out))
    summary = {
        "kind": kind,
        "base_model": portable_model_name(cfg.model),
        "lora": not cfg.full,
        "train_pairs": len(dataset),
        "processes": state.num_processes,
        "steps": trainer.state.global_step,
        "resumed_from": resume and Path(resume).name,
        "train_runtime_s": round(wall, 2),
        "train_loss": result.training_loss,
        "log_history": trainer.state.log_history,
        "fingerprint": fingerprint["id"],
    }
    if trainer.accelerator.is_main_process:
        _save_outputs(kind, cfg, data, out, trainer, tokenizer, summary, fingerprint)
    trainer.accelerator.wait_for_everyone()
    return summary


def _prepare_folder(out: Path, fingerprint: dict[str, Any]) -> str | None:
    """Clear ``out`` of finished outputs and foreign checkpoints; the checkpoint to resume from
    (one of this training's), if any."""
    state = process_state()
    resumable, stale = _checkpoints(out / CHECKPOINTS, fingerprint["id"])
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        _clear_outputs(out)  # the folder holds no finished model until this training ends
        for path in stale:
            print(f"discarding {path}: not a complete checkpoint of this training", flush=True)
            shutil.rmtree(path)
    state.wait_for_everyone()
    resume = str(resumable[-1]) if resumable else None
    if resume:
        _say(f"resuming from {resume}")
    return resume


def _trainer(
    kind: str,
    cfg: TrainConfig,
    dataset: Any,
    base: str,
    out: Path,
    fingerprint: dict[str, Any],
    callbacks: list[Any] | None,
) -> tuple[Any, Any]:
    """The seeded TRL trainer (DPO or SFT, LoRA unless ``cfg.full``) and its tokenizer."""
    from transformers import AutoTokenizer, set_seed

    # Seed every generator before the tokenizer, the model and the LoRA layers exist: LoRA's
    # initial weights come from torch's global generator.
    set_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    peft_config = None
    if not cfg.full:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_targets,
            task_type="CAUSAL_LM",
        )
    from trl import DPOTrainer, SFTTrainer

    trainer_cls = DPOTrainer if kind == "dpo" else SFTTrainer
    trainer = trainer_cls(
        model=base,
        args=_trl_args(kind, cfg, out),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[_fingerprint_callback(fingerprint), *(callbacks or [])],
    )
    return trainer, tokenizer


def _save_outputs(
    kind: str,
    cfg: TrainConfig,
    data: Path,
    out: Path,
    trainer: Any,
    tokenizer: Any,
    summary: dict[str, Any],
    fingerprint: dict[str, Any],
) -> None:
    """Everything beside the weights, the fingerprint last (main process only)."""
    portable = summary["base_model"]
    tokenizer.save_pretrained(str(out))
    if not cfg.full:
        _portable_adapter_config(out / "adapter_config.json", portable)
    final = dict(trainer.state.log_history[-1])
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "train_config.yaml").write_text(
        yaml.safe_dump(
            {"kind": kind, "data": str(data), **cfg.model_dump(mode="json")}, sort_keys=False
        )
    )
    (out / "README.md").write_text(_model_card(kind, cfg, data, portable, final))
    if cfg.merge and not cfg.full:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(out / "merged"))
        tokenizer.save_pretrained(str(out / "merged"))
    # Checkpoints only serve a resume; the finished model supersedes them.
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    # Written last: its presence means every other output of this training is complete.
    (out / FINGERPRINT_NAME).write_text(json.dumps(fingerprint, indent=2) + "\n")


def _portable_adapter_config(path: Path, base: str) -> None:
    """Record the portable base name in place of the resolved (cache) path peft wrote."""
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
