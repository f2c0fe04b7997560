"""`gravity prompt`, `--prompt-file -`, and third-party noise kept out of normal output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from gravity.books import load_catalog
from gravity.cli import app
from gravity.profiles import load_profiles
from gravity.profiles.render import render_profile
from gravity.resources import profiles_dir
from tests.fakes import child_env

JAPAN = profiles_dir() / "examples" / "japan.yaml"


def test_prompt_shows_the_deployed_messages_for_a_reader_and_a_book() -> None:
    book = load_catalog()[3]
    reader = load_profiles(JAPAN)[0]
    result = CliRunner().invoke(
        app, ["prompt", "--profile", str(JAPAN), "--item", book.id, "--json"]
    )
    assert result.exit_code == 0, result.output
    messages = json.loads(result.stdout)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert render_profile(reader) in messages[1]["content"]
    assert book.title in messages[1]["content"] and book.description in messages[1]["content"]


def test_prompt_without_a_profile_is_the_base_prompt() -> None:
    book = load_catalog()[0]
    result = CliRunner().invoke(app, ["prompt", "--item", book.id])
    assert result.exit_code == 0, result.output
    assert book.title in result.stdout
    assert "About the reader" not in result.stdout and "Culture" not in result.stdout


def test_prompt_unknown_book_is_one_line_naming_the_flag() -> None:
    result = CliRunner().invoke(app, ["prompt", "--profile", str(JAPAN), "--item", "no-such"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --item:") and "no-such" in lines[0]


def test_prompt_file_dash_reads_standard_input() -> None:
    result = CliRunner().invoke(
        app,
        ["llm", "generate", "--prompt-file", "-", "--max-new-tokens", "3", "--json"],
        input="Say hi.\n\nName a colour.\n",
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["prompt_index"] for r in records] == [0, 1]
    assert all(r["completion_tokens"] >= 1 for r in records)


def _export_stderr(run: Path, out: Path, *flags: str) -> str:
    env = child_env()
    for name in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
        env.pop(name, None)
    command = [sys.executable, "-m", "gravity", *flags, "export", str(run)]
    proc = subprocess.run(
        [*command, "--format", "parquet", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_third_party_progress_bars_are_quiet_unless_verbose(pair_export: Path, tmp_path) -> None:
    run = pair_export.parent / "run"
    quiet = _export_stderr(run, tmp_path / "quiet")
    verbose = _export_stderr(run, tmp_path / "verbose", "--verbose")
    # The same export: datasets draws its parquet bar only when asked to be verbose.
    assert "Creating parquet" in verbose
    assert "Creating parquet" not in quiet
    assert "Warning" not in quiet


def test_prompt_old_book_flag_names_the_new_one() -> None:
    result = CliRunner().invoke(app, ["prompt", "--book", "emma"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --book: renamed --item"
