"""No input can produce a traceback: random and mutated bytes through every loader, via the CLI.

Each case starts from a valid file of its kind (profiles, answers, catalogs, configs, exported
datasets, prompt files) and feeds hypothesis-made variants of it (byte flips, truncations,
insertions, hostile tokens, huge numbers, BOMs, NULs, deep nesting, YAML alias bombs, random
bytes) to the real command. Whatever the bytes: exit code 0 (the variant happens to be valid) or
2, no traceback, the file named in the message, and no output written.

Where a valid file would start a model, the model loading is replaced by a stub that stops with
``STUB-ACCEPTED``: the loader under test has then accepted the file.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gravity.cli import app
from gravity.errors import GravityError
from gravity.resources import profiles_dir

ROOT = Path(__file__).resolve().parents[1]
STUB = "STUB-ACCEPTED"
runner = CliRunner()
COMMAND = typer.main.get_command(app)  # built once: typer rebuilds it on every invoke (~0.1 s)

# Whole files no parser should survive quietly.
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)
HOSTILE_FILES: list[bytes] = [
    b"",
    b"\xef\xbb\xbf",
    b"\x00\x00\x00",
    b"\xff\xfe{\x00}\x00",
    b"[" * 50_000,
    b"{" * 50_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b"- " * 2_000 + b"x\n",
    ("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 200))).encode(),
    BILLION_LAUGHS.encode(),
    b"a: &a [*a]\n",
    b"a: &a {b: *a}\n",
    b"!!python/object/apply:os.system ['echo pwned']\n",
    b"--- 1\n--- 2\n",
    b"1e999",
    b'{"id": "\\ud800"}',
    b"[NaN, Infinity, -Infinity]",
    b"9" * 10_000,
    b"a: 0b" + b"1" * 5_000 + b"\n",
    b"a: .nan\nb: .inf\n",
    b"\xed\xa0\x80",
    b"id,title\n" + b"x," * 200_000 + b"\n",
    b'"' * 3,
    b"\r\r\r\n\n",
    "ＩＤ: ünïcödé 🙂\u202e\u0000".encode("utf-8", "surrogatepass"),
]
TOKENS: list[bytes] = [
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xed\xa0\x80",
    b"\\ud800",
    b"\\u0000",
    b"1e999",
    b"-1e999",
    b"NaN",
    b".nan",
    b"9" * 400,
    b"9" * 5_000,
    b"0x" + b"f" * 40,
    b"[" * 3_000,
    b"{" * 3_000,
    b"&x ",
    b"*x",
    b"*undefined",
    b"!!binary ",
    b"!!set ",
    b"!!python/name:os.system",
    b"---\n",
    b"\n- ",
    b": ",
    b'"',
    b"'",
    b",",
    b";",
    b"\t",
    b"\r",
    b"\n",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"2001-01-01",
    "🙂".encode(),
    "\u202e".encode(),
    "é".encode("latin-1"),
]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` after 1-4 random edits."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "token", "delete", "number"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 40))]
        else:  # replace one number of the file with an extreme one
            numbers = list(re.finditer(rb"-?\d+(\.\d+)?", bytes(data)))
            if numbers:
                m = draw(st.sampled_from(numbers))
                value = draw(
                    st.sampled_from([b"-1", b"0", b"1e308", b"-9" * 30, b"1" * 30, b"0.0000001"])
                )
                data[m.start() : m.end()] = value
    return bytes(data)


def variants(seed: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, known-hostile whole files, or mutations of a valid ``seed``."""
    return st.one_of(
        mutated(seed),
        mutated(seed),
        mutated(seed),
        st.sampled_from(HOSTILE_FILES),
        st.binary(max_size=300),
        st.sampled_from([b"\xef\xbb\xbf" + seed, seed.replace(b"\n", b"\r\n"), seed * 2]),
    )


# --- the cases: one per (loader, command, format) ------------------------------------------------


@dataclass
class Case:
    """A command that reads ``target`` (a file name in the case's folder) and may write
    ``outputs`` (relative paths that must not exist after a refused input)."""

    name: str
    target: str  # the file the variants replace (under the folder that `args` refer to)
    seed: Path  # the valid file the variants start from (in the seed folder)
    args: Callable[[Path], list[str]]
    outputs: tuple[str, ...] = ()
    named: str | None = None  # what the message must name, if not the target file


def _rows() -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"Describe book {i} for reader {i}."}],
            "chosen": [{"role": "assistant", "content": f"A tale for you, reader {i}."}],
            "rejected": [{"role": "assistant", "content": "A book."}],
            "user_id": f"train-{i}",
            "item_id": f"b{i}",
        }
        for i in range(3)
    ]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> Path:
    """Valid files of every kind the cases read."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    from gravity.books import load_catalog
    from gravity.evaluate import EvalConfig
    from gravity.profiles import SamplerConfig, dump_profiles, load_profiles
    from gravity.synth import GenerateConfig
    from gravity.train import TrainConfig

    d = tmp_path_factory.mktemp("seeds")
    examples = sorted((profiles_dir() / "examples").glob("*.yaml"))
    shutil.copy(examples[0], d / "profile.yaml")
    readers = [p for f in examples for p in load_profiles(f, fill_priors=False)]
    dump_profiles(readers, d / "profiles.jsonl")
    dump_profiles(readers[:2], d / "profiles.json")
    answers = {
        "id": "jp-q-001",
        "demographics": {"country": "JP", "age": 40, "gender": "female"},
        "bfi10": [2, 4, 5, 1, 2, 4, 3, 2, 3, 5],
        "pvq21": [6, 1, 5, 2, 4, 3, 2, 5, 1, 4, 6, 6, 2, 4, 3, 3, 1, 5, 6, 2, 4],
    }
    (d / "answers.yaml").write_text(yaml.safe_dump(answers, sort_keys=False))
    (d / "answers.json").write_text(json.dumps(answers, indent=1))
    books = [b.model_dump(mode="json") for b in load_catalog()[:3]]
    (d / "books.jsonl").write_text("".join(json.dumps(b) + "\n" for b in books))
    csv_lines = ["id,title,author,year,genres,description"]
    for b in books:
        desc = b["description"].replace('"', '""')
        csv_lines.append(
            f'{b["id"]},"{b["title"]}","{b["author"]}",{b["year"] or ""},'
            f'"{"; ".join(b["genres"])}","{desc}"'
        )
    (d / "books.csv").write_text("\n".join(csv_lines) + "\n")
    pq.write_table(pa.Table.from_pylist(books), d / "books.parquet")
    for name, cfg in (
        ("sampler.yaml", SamplerConfig()),
        ("generate.yaml", GenerateConfig()),
        ("train.yaml", TrainConfig()),
        ("eval.yaml", EvalConfig()),
    ):
        (d / name).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    shutil.copy(ROOT / "configs" / "demo.yaml", d / "run.yaml")
    rows = _rows()
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), d / "train.parquet")
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(d / "hf"))
    (d / "prompts.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "Hello"}]}) + "\n"
    )
    return d


@pytest.fixture(scope="module")
def stubs():
    """Stop each command where it would load a model: the input has been accepted by then."""

    def stop(*_args, **_kwargs):
        raise GravityError(STUB)

    import gravity.evaluate.runner
    import gravity.llm
    import gravity.llm.hf
    import gravity.run
    import gravity.synth

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gravity.synth, "make_backend", stop)
        mp.setattr(gravity.llm, "make_backend", stop)
        mp.setattr(gravity.llm.hf, "resolve_model", stop)
        mp.setattr(gravity.run, "run_pipeline", stop)
        mp.setattr(gravity.evaluate.runner, "Store", stop)
        yield


def _profiles_case(name: str) -> list[Case]:
    fmt = name.rsplit(".", 1)[1]
    return [
        Case(
            f"validate-{fmt}", name, Path(name), lambda d: ["profiles", "validate", str(d / name)]
        ),
        Case(f"show-{fmt}", name, Path(name), lambda d: ["profiles", "show", str(d / name)]),
        Case(
            f"generate-profiles-{fmt}",
            name,
            Path(name),
            lambda d: ["generate", "--profiles", str(d / name), "--out", str(d / "run")],
            ("run",),
        ),
    ]


def _generate(d: Path, *extra: str) -> list[str]:
    return ["generate", "--profiles", str(d / "ok.yaml"), "--out", str(d / "run"), *extra]


def _train(d: Path, data: str, *extra: str) -> list[str]:
    return ["train", "dpo", "--data", str(d / data), "--out", str(d / "model"), *extra]


def _evaluate(d: Path, *extra: str) -> list[str]:
    args = ["evaluate", "--profiles", str(d / "two.jsonl"), "--out", str(d / "eval")]
    return [*args, *extra]


CASES: list[Case] = [
    *_profiles_case("profile.yaml"),
    *_profiles_case("profiles.jsonl"),
    *_profiles_case("profiles.json"),
    *(
        Case(
            f"from-answers-{n.rsplit('.', 1)[1]}",
            n,
            Path(n),
            lambda d, n=n: ["profiles", "from-answers", str(d / n), "-o", str(d / "out.yaml")],
            ("out.yaml",),
        )
        for n in ("answers.yaml", "answers.json")
    ),
    *(
        Case(
            f"catalog-{n.rsplit('.', 1)[1]}",
            n,
            Path(n),
            lambda d, n=n: _generate(d, "--catalog", str(d / n)),
            ("run",),
        )
        for n in ("books.jsonl", "books.csv", "books.parquet")
    ),
    Case(
        "config-sampler",
        "sampler.yaml",
        Path("sampler.yaml"),
        lambda d: [
            "profiles",
            "sample",
            "--country",
            "DE",
            "--n",
            "2",
            "--config",
            str(d / "sampler.yaml"),
            "-o",
            str(d / "out.jsonl"),
        ],
        ("out.jsonl",),
    ),
    Case(
        "config-generate",
        "generate.yaml",
        Path("generate.yaml"),
        lambda d: _generate(d, "--config", str(d / "generate.yaml")),
        ("run",),
    ),
    Case(
        "config-train",
        "train.yaml",
        Path("train.yaml"),
        lambda d: _train(d, "data.jsonl", "--config", str(d / "train.yaml")),
        ("model",),
    ),
    Case(
        "config-eval",
        "eval.yaml",
        Path("eval.yaml"),
        lambda d: _evaluate(d, "--config", str(d / "eval.yaml")),
        ("eval",),
    ),
    Case("config-run", "run.yaml", Path("run.yaml"), lambda d: ["run", str(d / "run.yaml")]),
    Case(
        "data-jsonl",
        "data.jsonl",
        Path("train.jsonl"),
        lambda d: _train(d, "data.jsonl"),
        ("model",),
    ),
    Case(
        "data-parquet",
        "data.parquet",
        Path("train.parquet"),
        lambda d: _train(d, "data.parquet"),
        ("model",),
    ),
    Case(
        "data-hf-arrow",
        "hf/train/data-00000-of-00001.arrow",
        Path("hf/train/data-00000-of-00001.arrow"),
        lambda d: _train(d, "hf"),
        ("model",),
        named="hf",
    ),
    Case(
        "data-hf-info",
        "hf/train/dataset_info.json",
        Path("hf/train/dataset_info.json"),
        lambda d: _train(d, "hf"),
        ("model",),
        named="hf",
    ),
    Case(
        "data-hf-dict",
        "hf/dataset_dict.json",
        Path("hf/dataset_dict.json"),
        lambda d: _train(d, "hf"),
        ("model",),
        named="hf",
    ),
    Case(
        "train-data-eval",
        "data.jsonl",
        Path("train.jsonl"),
        lambda d: _evaluate(d, "--train-data", str(d / "data.jsonl")),
        ("eval",),
    ),
    Case(
        "export-run",
        "runs/pairs.jsonl",
        Path("train.jsonl"),
        lambda d: ["export", str(d / "runs"), "--out", str(d / "exp"), "--format", "jsonl"],
        ("exp",),
    ),
    Case(
        "prompt-file",
        "prompts.jsonl",
        Path("prompts.jsonl"),
        lambda d: ["llm", "generate", "--prompt-file", str(d / "prompts.jsonl")],
    ),
]


def _workdir(seeds: Path) -> Path:
    """A fresh folder with the valid companions every case needs."""
    d = Path(tempfile.mkdtemp(prefix="hostile-"))
    shutil.copy(seeds / "profile.yaml", d / "ok.yaml")
    lines = (seeds / "profiles.jsonl").read_text().splitlines()
    (d / "two.jsonl").write_text("\n".join(lines[:2]) + "\n")
    shutil.copy(seeds / "train.jsonl", d / "data.jsonl")
    shutil.copytree(seeds / "hf", d / "hf")
    return d


def run_case(case: Case, seeds: Path, content: bytes) -> None:
    """Write ``content`` as the case's target and check the invariants of a refused input."""
    d = _workdir(seeds)
    try:
        target = d / case.target
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        result = runner.invoke(COMMAND, case.args(d))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            detail = "".join(traceback.format_exception(result.exception))
            pytest.fail(f"{case.name}: traceback for input {content[:200]!r}\n{detail}")
        output = result.output
        assert "Traceback" not in output, output
        assert result.exit_code in (0, 2), (case.name, result.exit_code, output)
        if result.exit_code == 0 or STUB in output:
            return  # the variant is a valid file
        named = str(d / (case.named or case.target))
        assert named in output, (case.name, content[:200], output)
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert errors or case.name.startswith("validate"), output
        for out in case.outputs:
            assert not (d / out).exists(), (case.name, out, "written for a refused input")
    finally:
        shutil.rmtree(d, ignore_errors=True)


HYPOTHESIS = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@HYPOTHESIS
@given(data=st.data())
def test_hostile_bytes_never_traceback(case: Case, seeds: Path, stubs: None, data) -> None:
    seed = (seeds / case.seed).read_bytes()
    content = data.draw(variants(seed), label="content")
    run_case(case, seeds, content)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_seed_files_are_accepted(case: Case, seeds: Path, stubs: None) -> None:
    """The starting points are valid: the hostile test does start from files that load."""
    d = _workdir(seeds)
    try:
        target = d / case.target
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(seeds / case.seed, target)
        result = runner.invoke(COMMAND, case.args(d))
        assert result.exit_code == 0 or STUB in result.output, (case.name, result.output)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# One command per loader and format: every known-hostile file through each.
LOADERS = [
    c
    for c in CASES
    if c.name.startswith(("validate-", "from-answers-yaml", "catalog-", "config-", "data-"))
    or c.name in ("train-data-eval", "prompt-file", "export-run")
]


@pytest.mark.parametrize("content", HOSTILE_FILES, ids=range(len(HOSTILE_FILES)))
@pytest.mark.parametrize(
    "case", [c for c in LOADERS if not c.name.startswith("data-hf")], ids=lambda c: c.name
)
def test_every_known_hostile_file(case: Case, seeds: Path, stubs: None, content: bytes) -> None:
    run_case(case, seeds, content)
