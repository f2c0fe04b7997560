"""What identifies a training (its fingerprint), its checkpoints, and the outputs it owns: a
rerun resumes only from checkpoints of the same training and reuses only the same model."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Literal

from gravity.errors import GravityError
from gravity.train.config import TrainConfig
from gravity.train.data import training_rows

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
    return _fingerprint(kind, cfg, training_rows(kind, Path(data)), resolve_model(cfg.model))


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
