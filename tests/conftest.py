"""Shared fixtures. Tests never reach a model hub: HF_HUB_OFFLINE is forced on."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from gravity.profiles import UserProfile, load_profiles
from gravity.resources import profiles_dir

EXAMPLES = sorted((profiles_dir() / "examples").glob("*.yaml"))


@pytest.fixture(scope="session")
def example_files() -> list[Path]:
    assert len(EXAMPLES) >= 4
    return EXAMPLES


@pytest.fixture(scope="session")
def example_profiles(example_files: list[Path]) -> list[UserProfile]:
    return [p for f in example_files for p in load_profiles(f)]
