"""The training config (YAML keys and flags) and how it maps to TRL's arguments."""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gravity.errors import GravityError, MissingDependencyError

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Training settings; the same names in YAML and as CLI flags. Defaults suit the embedded
    135M model on a CPU."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default="smollm2", description="Base model: 'smollm2', a directory or hub id."
    )
    full: bool = Field(default=False, description="Full fine-tuning instead of LoRA.")
    beta: float = Field(default=0.1, gt=0, description="DPO temperature (ignored by SFT).")
    learning_rate: float = Field(default=1e-4, gt=0, description="Peak learning rate.")
    num_train_epochs: float = Field(
        default=1.0, gt=0, description="Passes over the data (max_steps caps them)."
    )
    max_steps: int = Field(default=-1, description="Cap on optimizer steps (-1: no cap).")
    per_device_train_batch_size: int = Field(
        default=2, ge=1, description="Examples per device per forward pass."
    )
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, description="Forward passes summed into one optimizer step."
    )
    max_length: int = Field(default=1024, ge=32, description="Prompt + response tokens.")
    lora_r: int = Field(default=8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(default=16, ge=1, description="LoRA scaling (alpha / r).")
    lora_dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on LoRA inputs.")
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Names of the modules that get LoRA layers.",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32", description="fp32 is the safe choice on CPU; bf16 on recent GPUs."
    )
    seed: int = Field(default=0, description="Seeds Python, NumPy, torch and the data order.")
    logging_steps: int = Field(default=1, ge=1, description="Log metrics every N steps.")
    save_steps: int = Field(
        default=50,
        ge=0,
        description="Checkpoint every N optimizer steps (0: never); a rerun resumes from the "
        "last one. Checkpoints are deleted once the final model is saved.",
    )
    save_total_limit: int = Field(default=2, ge=1, description="Checkpoints kept while training.")
    merge: bool = Field(default=False, description="Also write a merged model (LoRA only).")
    trl_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra DPOConfig/SFTConfig fields, checked against TRL's own field names.",
    )


def _check_overrides(config_cls: type, overrides: dict[str, Any]) -> None:
    valid = {f.name for f in fields(config_cls)}
    for key in overrides:
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise GravityError(f"trl_overrides: '{key}' is not a {config_cls.__name__} field{hint}")


def cpu_group() -> bool:
    """Whether the launched processes of a training must form a CPU (gloo) group: several were
    launched (``WORLD_SIZE`` > 1) and there is no CUDA device. accelerate forms such a group
    only when asked for the CPU; otherwise each process trains alone as a group of one."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def _trl_args(kind: str, cfg: TrainConfig, out: Path) -> Any:
    try:
        from trl import DPOConfig, SFTConfig
    except ImportError:
        raise MissingDependencyError("training", "train", "trl") from None
    config_cls = DPOConfig if kind == "dpo" else SFTConfig
    _check_overrides(config_cls, cfg.trl_overrides)
    kwargs: dict[str, Any] = {
        "output_dir": str(out / "checkpoints"),
        "learning_rate": cfg.learning_rate,
        "num_train_epochs": cfg.num_train_epochs,
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "max_length": cfg.max_length,
        "seed": cfg.seed,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps" if cfg.save_steps else "no",
        "save_steps": cfg.save_steps or 500,  # unused when save_strategy is "no"
        "save_total_limit": cfg.save_total_limit,
        "report_to": "none",
        "bf16": cfg.precision == "bf16",
        "fp16": cfg.precision == "fp16",
        "disable_tqdm": False,
        # Several processes without CUDA train as one CPU group (see trainer.process_state).
        "use_cpu": cpu_group(),
    }
    if kind == "dpo":
        kwargs["beta"] = cfg.beta
    kwargs.update(cfg.trl_overrides)
    return config_cls(**kwargs)
