"""Evaluation against the paper's baselines: persona judge, alignment score, human sheets."""

from typing import Any

from gravity.evaluate.config import EvalConfig, SystemSpec

__all__ = ["EvalConfig", "SystemSpec", "evaluate"]


def __getattr__(name: str) -> Any:
    # The runner (judging, metrics, plotting) loads on first use: every CLI invocation imports
    # the config models, and only `evaluate`/`run` need the rest.
    if name == "evaluate":
        from gravity.evaluate.runner import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
