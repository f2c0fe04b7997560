"""Evaluation against the paper's baselines: persona judge, alignment score, human sheets."""

from gravity.evaluate.config import EvalConfig, SystemSpec
from gravity.evaluate.runner import evaluate

__all__ = ["EvalConfig", "SystemSpec", "evaluate"]
