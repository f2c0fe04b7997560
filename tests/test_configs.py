"""Every config shipped in configs/ validates against RunConfig: a renamed or removed field in a
stage config must not leave a shipped example broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from gravity.config import RunConfig
from gravity.io import load_yaml_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_configs_folder_is_not_empty() -> None:
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path) -> None:
    cfg = load_yaml_model(path, RunConfig)
    assert isinstance(cfg, RunConfig)
