"""The built wheel carries prompts/, profiles/ and tasks/ and works outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling", reason="the dev extra provides hatchling")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
    )
    (whl,) = out.glob("gravity-*.whl")
    return whl


def test_wheel_contains_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "gravity/_data/prompts/profile.j2" in names
    assert "gravity/_data/profiles/reference/hofstede-6d-2015-08-16.csv" in names
    assert "gravity/_data/profiles/reference/README.md" in names
    assert any(n.startswith("gravity/_data/profiles/examples/") for n in names)
    # The built-in tasks (issue 22) and the generic task templates ship too.
    for task in ("book-description", "product-description", "travel-pitch"):
        assert f"gravity/_data/tasks/{task}/task.yaml" in names
    assert "gravity/_data/tasks/book-description/catalog.jsonl" in names
    assert "gravity/_data/tasks/travel-pitch/catalog.csv" in names
    assert "gravity/_data/prompts/task/deployed.j2" in names


def test_installed_wheel_runs_from_elsewhere(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    # The wheel's copy must win over the source checkout: PYTHONPATH comes first on sys.path.
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import gravity.resources as r; print(r.__file__, r.prompts_dir())"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(target) in where and str(ROOT / "prompts") not in where
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gravity",
            "profiles",
            "sample",
            "--country",
            "JP",
            "--n",
            "3",
            "-o",
            "p.jsonl",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert len((workdir / "p.jsonl").read_text().splitlines()) == 3
    shown = subprocess.run(
        [sys.executable, "-m", "gravity", "profiles", "show", "p.jsonl", "--facet", "culture"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "uncertainty avoidance: very high (92)" in shown
    checked = subprocess.run(
        [sys.executable, "-m", "gravity", "tasks", "check", "travel-pitch"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert "42 destinations in its catalog" in checked.stdout
