"""Locate the data that ships with gravity (prompt templates, reference tables, examples).

In a source checkout they live at the top level (``prompts/``, ``profiles/``); in an installed
wheel they are copied to ``gravity/_data/`` (see ``force-include`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"gravity data folder '{name}' is missing from the installation")


def prompts_dir() -> Path:
    """Folder of the Jinja prompt templates."""
    return _data_dir("prompts")


def profiles_dir() -> Path:
    """Folder of example profiles and reference tables."""
    return _data_dir("profiles")


def reference_dir() -> Path:
    """Folder of the culture reference tables (Hofstede, WVS) and their source notes."""
    return profiles_dir() / "reference"


def tasks_dir() -> Path:
    """Folder of the built-in tasks (one folder each, with its task.yaml)."""
    return _data_dir("tasks")
