"""Training: DPO on preference pairs (TRL ``DPOTrainer``) and the SFT baseline (``SFTTrainer``
on the prompts with their chosen responses). LoRA (peft) by default, full fine-tuning on request.

    gravity train dpo --data data/gravity-pairs --out runs/dpo
    gravity train sft --data data/gravity-pairs --out runs/sft --max-steps 20
    accelerate launch --num_processes 2 -m gravity train dpo --data ... --out ...

TRL always receives a saved model directory (the embedded model's converted checkpoint by
default): with an in-memory model it would rebuild the reference model from an empty name.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import yaml
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
    learning_rate: float = Field(default=1e-4, gt=0)
    num_train_epochs: float = Field(default=1.0, gt=0)
    max_steps: int = Field(default=-1, description="Cap on optimizer steps (-1: no cap).")
    per_device_train_batch_size: int = Field(default=2, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=1024, ge=32, description="Prompt + response tokens.")
    lora_r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32", description="fp32 is the safe choice on CPU; bf16 on recent GPUs."
    )
    seed: int = 0
    logging_steps: int = Field(default=1, ge=1)
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
        "save_strategy": "no",
        "report_to": "none",
        "bf16": cfg.precision == "bf16",
        "fp16": cfg.precision == "fp16",
        "disable_tqdm": False,
    }
    if kind == "dpo":
        kwargs["beta"] = cfg.beta
    kwargs.update(cfg.trl_overrides)
    return config_cls(**kwargs)


def _dataset(kind: str, data: Path) -> Any:
    from gravity.export import load_preference_data

    ds = load_preference_data(data)
    if len(ds) == 0:
        raise GravityError(f"{data}: the train split is empty")
    if kind == "dpo":
        return ds.select_columns(["prompt", "chosen", "rejected"])
    # SFT baseline: the deployed prompt with its chosen response (completion-only loss).
    return ds.map(
        lambda row: {"prompt": row["prompt"], "completion": row["chosen"]},
        remove_columns=ds.column_names,
    )


def _model_card(kind: str, cfg: TrainConfig, data: Path, base: str, metrics: dict[str, Any]) -> str:
    method = "DPO (TRL DPOTrainer)" if kind == "dpo" else "SFT on chosen responses (TRL SFTTrainer)"
    adapter = "full fine-tuning" if cfg.full else f"LoRA r={cfg.lora_r}, alpha={cfg.lora_alpha}"
    meta = {
        "library_name": "peft" if not cfg.full else "transformers",
        "base_model": base,
        "tags": ["gravity", kind, "personalization"],
    }
    return "\n".join(
        [
            "---",
            yaml.safe_dump(meta, sort_keys=False).strip(),
            "---",
            "",
            f"# gravity {kind} model",
            "",
            f"- method: {method}, {adapter}",
            f"- base model: `{base}`",
            f"- data: `{data}`",
            f"- final metrics: `{json.dumps(metrics, sort_keys=True)}`",
            "",
            "## Config",
            "",
            "```yaml",
            yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).strip(),
            "```",
            "",
        ]
    )


def train(
    kind: Literal["dpo", "sft"], data: str | Path, out: str | Path, cfg: TrainConfig | None = None
) -> dict[str, Any]:
    """Train and save to ``out``: model or adapter, tokenizer, config, metrics, model card.

    Returns the summary written to ``out/metrics.json``.
    """
    from transformers import AutoTokenizer

    from gravity.llm.hf import adapter_base, resolve_model

    cfg = cfg or TrainConfig()
    data, out = Path(data), Path(out)
    dataset = _dataset(kind, data)
    base = resolve_model(cfg.model)
    if adapter_base(base) is not None:
        raise GravityError(
            f"--model: '{cfg.model}' is a LoRA adapter; train from a full model "
            "(use a --merge output)"
        )
    args = _trl_args(kind, cfg, out)
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
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    if len(trainer.train_dataset) == 0:
        raise GravityError(
            f"{data}: no example fits max_length={cfg.max_length} tokens after tokenization; "
            "raise --max-length"
        )
    start = time.monotonic()
    result = trainer.train()
    wall = time.monotonic() - start
    trainer.save_model(str(out))
    summary = {
        "kind": kind,
        "base_model": base,
        "lora": not cfg.full,
        "train_pairs": len(dataset),
        "steps": trainer.state.global_step,
        "train_runtime_s": round(wall, 2),
        "train_loss": result.training_loss,
        "log_history": trainer.state.log_history,
    }
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(out))
        final = dict(trainer.state.log_history[-1])
        (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out / "train_config.yaml").write_text(
            yaml.safe_dump(
                {"kind": kind, "data": str(data), **cfg.model_dump(mode="json")}, sort_keys=False
            )
        )
        (out / "README.md").write_text(_model_card(kind, cfg, data, base, final))
        if cfg.merge and not cfg.full:
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(str(out / "merged"))
            tokenizer.save_pretrained(str(out / "merged"))
    trainer.accelerator.wait_for_everyone()
    return summary
