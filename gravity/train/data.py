"""The rows a training reads: preference pairs for DPO, prompt and chosen response for SFT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gravity.errors import GravityError


def training_rows(kind: str, data: Path) -> Any:
    """The training split of ``data`` as TRL expects it for ``kind`` (dpo or sft)."""
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
