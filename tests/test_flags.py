"""The config models are the one source of the command line: every scalar field of every config
model a command takes round-trips through YAML and is reachable as a flag named after it.

The expected fields are derived here from ``model_fields`` (never from a hand list), with a
classification of their own, so a new field that no flag reaches fails these tests.
"""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal
from unittest import mock

import annotated_types
import pytest
import typer
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from gravity.cli import app
from gravity.config import ProfilesStage, RunConfig
from gravity.evaluate.config import EvalConfig
from gravity.events.infer import InferConfig
from gravity.flags import config_flags, config_yaml, yaml_only_fields
from gravity.intents.config import BuildConfig
from gravity.intents.config import EvalConfig as IntentsEvalConfig
from gravity.io import load_yaml_model
from gravity.llm import BACKENDS
from gravity.llm.config import BackendConfig, BackendName
from gravity.profiles.sampler import SamplerConfig
from gravity.synth.config import FilterConfig, GenerateConfig
from gravity.train import TrainConfig

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
README = Path(__file__).resolve().parents[1] / "README.md"

# Each config model a command takes, and the command line that reaches the config (inputs
# that are not config fields are given dummy values: --show-config exits before reading them).
COMMANDS: dict[type[BaseModel], list[str]] = {
    GenerateConfig: ["generate", "--profiles", "p.yaml", "--out", "out"],
    TrainConfig: ["train", "dpo", "--data", "data", "--out", "out"],
    EvalConfig: ["evaluate", "--profiles", "p.yaml", "--out", "out"],
    RunConfig: ["run", "RUN_YAML"],
    InferConfig: ["profiles", "infer", "--events", "events", "-o", "out.jsonl"],
    BackendConfig: ["llm", "generate"],
    SamplerConfig: ["profiles", "sample", "--country", "BR"],
    BuildConfig: ["intents", "build", "--events", "events", "--out", "graph"],
    IntentsEvalConfig: ["intents", "evaluate", "--events", "events", "--graph", "graph"],
}


def _strip(tp: Any) -> tuple[Any, bool]:
    """The type without Annotated and None, and whether None was allowed."""
    optional = False
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if typing.get_origin(tp) is typing.Union or isinstance(tp, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(tp))
            if len(args) == 1:
                tp = args[0]
                continue
        return tp, optional


def _is_scalar(tp: Any) -> bool:
    tp, _ = _strip(tp)
    if typing.get_origin(tp) is Literal:
        return True
    return isinstance(tp, type) and issubclass(tp, (bool, int, float, str, Path))


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[tuple, Any]]:
    """Every non-model field below ``model``: (path, FieldInfo)."""
    out = []
    for name, field in model.model_fields.items():
        tp, _ = _strip(field.annotation)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            out += _leaves(tp, (*prefix, name))
        else:
            out.append(((*prefix, name), field))
    return out


def _models(model: type[BaseModel]) -> set[type[BaseModel]]:
    found = {model}
    for field in model.model_fields.values():
        tp, _ = _strip(field.annotation)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            found |= _models(tp)
    return found


def _flag_kind(field: Any) -> str | None:
    """'scalar', 'list' (a list of scalars) or None (YAML-only)."""
    tp, _ = _strip(field.annotation)
    if _is_scalar(tp):
        return "scalar"
    if typing.get_origin(tp) is list and _is_scalar(typing.get_args(tp)[0]):
        return "list"
    return None


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part] if isinstance(data, dict) else getattr(data, part)
    return data


def _bounds(field: Any) -> tuple[float, float]:
    low, high = float("-inf"), float("inf")
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge):
            low = max(low, meta.ge)
        if isinstance(meta, annotated_types.Gt):
            low = max(low, meta.gt + 1e-9)
        if isinstance(meta, annotated_types.Le):
            high = min(high, meta.le)
        if isinstance(meta, annotated_types.Lt):
            high = min(high, meta.lt - 1e-9)
    return low, high


def _simple(tp: Any) -> Any:
    """A plain valid value of a scalar type (no constraints known)."""
    tp, _ = _strip(tp)
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)[0]
    return {bool: True, int: 1, float: 0.5, str: "example", Path: Path("some/file")}[
        next(t for t in (bool, int, float, str, Path) if issubclass(tp, t))
    ]


def _other_value(field: Any, default: Any) -> Any:
    """A valid value of ``field`` other than ``default``, derived from its type and bounds."""
    tp, _ = _strip(field.annotation)
    if typing.get_origin(tp) is list:
        item = typing.get_args(tp)[0]
        if isinstance(default, list) and len(default) > 1 and default[::-1] != default:
            return default[::-1]  # keeps per-item constraints and lengths that pair up
        if isinstance(default, list) and default and typing.get_origin(_strip(item)[0]):
            return [c for c in typing.get_args(_strip(item)[0]) if c != default[0]][:1]
        return [_simple(item)]
    if typing.get_origin(tp) is Literal:
        return next(c for c in typing.get_args(tp) if c != default)
    if tp is bool:
        return not default
    if tp in (int, float):
        low, high = _bounds(field)
        if default is None:
            candidates = [low if low > float("-inf") else 1, 1, 0.5]
        elif tp is int:
            candidates = [default + 1, default - 1]
        else:
            candidates = [default / 2, default + 0.5, default - 0.5, 0.5]
        for value in candidates:
            value = tp(value) if tp is int or value != low else value
            if low <= value <= high and value != default:
                return value
        raise AssertionError(f"no value for {field} within ({low}, {high})")
    if issubclass(tp, Path):
        return Path("some/file.csv")
    patterns = [m.pattern for m in field.metadata if getattr(m, "pattern", None)]
    if tp is str and patterns:
        return PATTERNED[patterns[0]]
    return "example" if default != "example" else "other"


# A valid value of each string pattern a config field has.
PATTERNED = {r"^[0-9]+/[0-9]+$": "1/4"}


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _set(data: dict, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
    data[path[-1]] = value


def _flag(path: tuple) -> str:
    return "--" + ".".join(p.replace("_", "-") for p in path)


# Fields whose other value is valid only with a sibling field set too (a cross-field check of
# the model): field name -> {sibling name: value}, applied at the same level.
COMPANIONS: dict[str, dict[str, Any]] = {"item_selection": {"intent_graph": "some/graph"}}


def _with_companions(path: tuple, value: Any) -> list[tuple[tuple, Any]]:
    """(path, value) and the sibling fields it needs."""
    siblings = COMPANIONS.get(path[-1], {})
    return [(path, value), *(((*path[:-1], name), v) for name, v in siblings.items())]


def _cases() -> list[tuple[type[BaseModel], tuple, Any]]:
    cases = []
    for model in COMMANDS:
        for path, field in _leaves(model):
            if _flag_kind(field) is not None:
                cases.append((model, path, field))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def command():
    """The click command of the CLI, built once (building it is the slow part)."""
    return typer.main.get_command(app)


@pytest.fixture(scope="module")
def cli(tmp_path_factory, command):
    """Invoke the real CLI (wide, so that --help wraps no flag name)."""
    run_yaml = tmp_path_factory.mktemp("run") / "run.yaml"
    run_yaml.write_text("out_dir: runs/flags-test\n")
    runner = CliRunner()

    def invoke(args: list[str]):
        args = [str(run_yaml) if a == "RUN_YAML" else a for a in args]
        with mock.patch("typer.testing._get_command", lambda _app: command):
            return runner.invoke(app, args, env={"COLUMNS": "250"})

    return invoke


def _args(path: tuple, value: Any) -> list[str]:
    if isinstance(value, bool):
        name = ".".join(p.replace("_", "-") for p in path)
        return [f"--{name}" if value else f"--no-{name}"]
    if isinstance(value, list):
        return [part for item in value for part in (_flag(path), str(item))]
    return [_flag(path), str(value)]


def test_every_config_model_is_walked() -> None:
    walked = set().union(*(_models(m) for m in COMMANDS))
    expected = {GenerateConfig, FilterConfig, TrainConfig, EvalConfig, BackendConfig}
    expected |= {RunConfig, ProfilesStage, InferConfig, SamplerConfig}
    assert expected <= walked
    # each stage of a run is a model walked (so a new stage config is walked too)
    for name, field in RunConfig.model_fields.items():
        tp, _ = _strip(field.annotation)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            assert tp in walked, name
    assert len(CASES) > 150


@pytest.mark.parametrize(
    "model, path, field", CASES, ids=[f"{m.__name__}:{'.'.join(p)}" for m, p, _ in CASES]
)
def test_field_round_trips_through_yaml_and_the_command_line(
    cli, tmp_path, model, path, field
) -> None:
    default = _get(model(), path)
    value = _other_value(field, default)
    assert _json(value) != _json(default)
    # (a) YAML: the field's dotted path is a YAML key whose value loads back unchanged
    data: dict = {}
    given = _with_companions(path, value)
    for p, v in given:
        _set(data, p, _json(v))
    file = tmp_path / "cfg.yaml"
    file.write_text(yaml.safe_dump(data))
    assert _json(_get(load_yaml_model(file, model), path)) == _json(value)
    # (b) the command line: the field's flag, printed back by --show-config
    flags = [part for p, v in given for part in _args(p, v)]
    result = cli([*COMMANDS[model], *flags, "--show-config"])
    assert result.exit_code == 0, result.output
    shown = yaml.load(result.stdout, Loader=_LOADER)
    assert _get(shown, path) == _json(value)
    _, optional = _strip(field.annotation)
    if optional and _flag_kind(field) == "scalar" and default is not None:
        result = cli([*COMMANDS[model], _flag(path), "null", "--show-config"])
        assert result.exit_code == 0, result.output
        assert _get(yaml.load(result.stdout, Loader=_LOADER), path) is None


@pytest.mark.parametrize("model", list(COMMANDS), ids=lambda m: m.__name__)
def test_whole_config_round_trips_through_show_config(cli, tmp_path, model) -> None:
    """What --show-config prints is a valid --config file that loads to the same config."""
    shown = cli([*COMMANDS[model], "--show-config"])
    assert shown.exit_code == 0, shown.output
    file = tmp_path / "shown.yaml"
    file.write_text(shown.stdout)
    loaded = load_yaml_model(file, model)
    assert config_yaml(loaded) == shown.stdout
    if model is not RunConfig:  # run's YAML sets out_dir
        assert loaded == model()


def test_flags_apply_over_the_yaml_config_and_only_when_given(cli, tmp_path) -> None:
    file = tmp_path / "train.yaml"
    file.write_text("merge: true\nlora_r: 4\nlora_targets: [q_proj]\n")
    base = ["train", "dpo", "--data", "d", "--out", "o", "--config", str(file), "--show-config"]
    shown = yaml.safe_load(cli(base).stdout)
    assert (shown["merge"], shown["lora_r"], shown["lora_targets"]) == (True, 4, ["q_proj"])
    shown = yaml.safe_load(cli([*base, "--no-merge", "--lora-r", "16"]).stdout)
    assert (shown["merge"], shown["lora_r"], shown["lora_targets"]) == (False, 16, ["q_proj"])


def test_yaml_only_fields_are_exactly_the_non_scalar_ones() -> None:
    for model in COMMANDS:
        expected = {".".join(p) for p, f in _leaves(model) if _flag_kind(f) is None}
        assert set(yaml_only_fields(model)) == expected, model.__name__


def test_every_flag_has_a_description() -> None:
    """--help shows the field's description: every field a flag reaches has one."""
    missing = [
        f"{model.__name__}:{'.'.join(path)}"
        for model in COMMANDS
        for path, field in _leaves(model)
        if _flag_kind(field) is not None and not (field.description or "").strip()
    ]
    assert missing == []


def test_an_option_clashing_with_a_field_flag_is_refused() -> None:
    def command(catalog: Annotated[Path | None, typer.Option()] = None, *, flags) -> None:
        """A command with its own --catalog, which GenerateConfig.catalog would also claim."""

    with pytest.raises(TypeError, match="--catalog"):
        config_flags(GenerateConfig)(command)


def test_help_shows_descriptions_and_choices(cli) -> None:
    result = cli(["generate", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "--max-items" in text and "Books per reader." in text
    assert "--backend.base-urls" in text and "generic|contrasting|other_intent" in text
    assert "--item-selection" in text and "random|intents" in text
    result = cli(["evaluate", "--help"])
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "--judge.model" in text and "--judge-model" not in text
    assert "YAML-only" in text  # the panel of --sft/--naive/--gravity/--extra-model


@pytest.mark.parametrize(
    "args, flag",
    [
        (["generate", "--profiles", "p", "--out", "o", "--max-items", "0"], "--max-items"),
        (["llm", "generate", "--backend", "nope", "hi"], "--backend"),
        (["generate", "--profiles", "p", "--out", "o", "--facets", "zodiac"], "--facets"),
        (["train", "dpo", "--data", "d", "--out", "o", "--lora-dropout", "1"], "--lora-dropout"),
        (["run", "RUN_YAML", "--generate.filters.min-words", "500"], "--generate.filters"),
        (["evaluate", "--profiles", "p", "--out", "o", "--judge.batch-size", "x"], "batch-size"),
    ],
)
def test_bad_flag_value_is_one_line_naming_the_flag(cli, args, flag) -> None:
    result = cli([*args, "--show-config"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], result.output


def test_backend_names_are_the_backends_make_backend_knows() -> None:
    assert set(typing.get_args(BackendName)) == set(BACKENDS)


def _flags_of(command: Any) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def test_readme_flags_exist(command) -> None:
    """Every flag a `gravity ...` line of the README uses exists on that command, and every
    YAML-only field is named in the README."""
    text = README.read_text()
    lines = [line.strip() for line in re.findall(r"^\s*(gravity [^\n`]*)", text, re.M)]
    lines += re.findall(r"`(gravity [^`]+)`", text)
    assert len(lines) > 20
    checked = 0
    for line in lines:
        target, words = command, line.split()[1:]
        while words and hasattr(target, "commands") and words[0] in target.commands:
            target = target.commands[words.pop(0)]
        known = _flags_of(target)
        for flag in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9.-]*[a-z0-9]|-[a-z])\b", line):
            if flag.startswith("--") or flag in ("-o", "-n"):
                assert flag in known, f"README: {line!r}: {flag} is not a flag of {target.name}"
                checked += 1
    assert checked > 20
    for model in COMMANDS:
        for name in yaml_only_fields(model):
            assert f"`{name.split('.')[-1]}`" in text, f"README lacks YAML-only field {name}"
