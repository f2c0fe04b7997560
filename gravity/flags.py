"""Command-line flags derived from the pydantic config models: the models are the one source.

Every scalar field of a config model (int, float, str, bool, Path, a ``Literal`` enumeration,
an Optional of those, or a list of them) becomes a flag named after its dotted path in
kebab-case: ``max_items`` -> ``--max-items``, ``backend.base_urls`` -> ``--backend.base-urls``
(repeat a list flag to give several values), a bool ``merge`` -> ``--merge/--no-merge``.
``--help`` shows the field's description, its choices and the model's default. Fields that hold
models in lists or dicts (``EvalConfig.systems``, ``TrainConfig.trl_overrides``) are YAML-only.

``@config_flags(Model)`` adds these flags and ``--show-config`` to a typer command and hands the
command a ``ConfigFlags`` whose ``resolve`` loads ``--config``, applies the flags given over it
and validates the result, blaming a bad value on its flag.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, ValidationError

from gravity.errors import GravityError, printable, validation_problems

SCALARS = (int, float, str, bool, Path)


@dataclass(frozen=True)
class FlagSpec:
    """One config field reachable as a flag."""

    path: tuple[str, ...]
    """Field names from the top model down, e.g. ``("backend", "base_urls")``."""
    base: type
    """The scalar type of the value (of each item, for a list)."""
    choices: tuple[Any, ...] | None
    """The values of a ``Literal`` field, else None."""
    multiple: bool
    """A list field: the flag is repeated, and the values given replace the whole list."""
    description: str
    default: Any
    optional: bool = False
    """None is a valid value: the flag also takes ``null``."""

    @property
    def flag(self) -> str:
        """``--backend.base-urls``."""
        return "--" + ".".join(part.replace("_", "-") for part in self.path)

    @property
    def param(self) -> str:
        """The Python parameter name the flag is passed as."""
        return "cfg__" + "__".join(self.path)


def _members(tp: Any) -> list[Any]:
    """The alternatives of ``tp`` without None, Annotated metadata removed."""
    if typing.get_origin(tp) is Annotated:
        return _members(typing.get_args(tp)[0])
    if typing.get_origin(tp) is typing.Union or isinstance(tp, types.UnionType):
        return [m for arg in typing.get_args(tp) if arg is not type(None) for m in _members(arg)]
    return [tp]


def _is_optional(tp: Any) -> bool:
    if typing.get_origin(tp) is Annotated:
        return _is_optional(typing.get_args(tp)[0])
    if typing.get_origin(tp) is typing.Union or isinstance(tp, types.UnionType):
        return any(arg is type(None) or _is_optional(arg) for arg in typing.get_args(tp))
    return False


def _scalar(tp: Any) -> tuple[type, tuple[Any, ...] | None] | None:
    """``(base type, choices)`` of a scalar annotation, or None for anything else."""
    members = _members(tp)
    if len(members) != 1:
        return None
    tp = members[0]
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        kinds = {type(c) for c in choices}
        return (kinds.pop(), choices) if len(kinds) == 1 and kinds <= set(SCALARS) else None
    if isinstance(tp, type) and issubclass(tp, SCALARS):
        return (Path if issubclass(tp, Path) else tp), None
    return None


def _model(tp: Any) -> type[BaseModel] | None:
    members = _members(tp)
    if len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], BaseModel):
        return members[0]
    return None


def _field_kind(tp: Any) -> tuple[type, tuple[Any, ...] | None, bool] | None:
    """``(base, choices, multiple)`` of a field a flag can carry, else None (YAML-only)."""
    found = _scalar(tp)
    if found is not None:
        return (*found, False)
    members = _members(tp)
    if len(members) == 1 and typing.get_origin(members[0]) is list:
        (item,) = typing.get_args(members[0]) or (None,)
        found = _scalar(item) if item is not None else None
        if found is not None and found[0] is not bool:
            return (*found, True)
    return None


def _walk(
    model: type[BaseModel], default: Any, prefix: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], Any, Any, str, Any]]:
    for name, field in model.model_fields.items():
        value = getattr(default, name)
        yield (*prefix, name), field.annotation, value, field.description or "", field
        sub = _model(field.annotation)
        if sub is not None and value is not None:
            yield from _walk(sub, value, (*prefix, name))


def field_flags(model: type[BaseModel]) -> list[FlagSpec]:
    """The flag of every scalar field of ``model`` and of the models nested in it."""
    specs = []
    for path, annotation, default, description, _ in _walk(model, model(), ()):
        kind = _field_kind(annotation)
        if kind is not None:
            optional = _is_optional(annotation)
            specs.append(FlagSpec(path, *kind, description, default, optional))
    return specs


def yaml_only_fields(model: type[BaseModel]) -> list[str]:
    """Dotted paths of the fields no flag reaches (lists of models, dicts, tuples)."""
    return [
        ".".join(path)
        for path, annotation, *_ in _walk(model, model(), ())
        if _field_kind(annotation) is None and _model(annotation) is None
    ]


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "[]"
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def _parameter(spec: FlagSpec, panel: str) -> inspect.Parameter:
    help_text = " ".join(filter(None, [spec.description, f"(default: {_shown(spec.default)})"]))
    section = f"{panel}: {spec.path[0]}" if len(spec.path) > 1 else panel
    options: dict[str, Any] = {"help": help_text, "show_default": False}
    options["rich_help_panel"] = section
    # typer turns a Literal into a click.Choice (choices shown in --help and checked); a list
    # of Literal values it cannot type, so those are checked by a parser of their own
    base: Any = spec.base
    if spec.optional and not spec.multiple and spec.base is not bool:
        # 'null' sets None (e.g. disables a filter); other text is converted by the model
        options["parser"] = _null_parser(spec.choices)
        kind = "|".join(map(str, spec.choices)) if spec.choices else spec.base.__name__.upper()
        options["metavar"] = f"[{kind}|null]"
        base = str
    elif spec.choices is not None and not spec.multiple:
        base = Literal[spec.choices]
    elif spec.choices is not None:
        options["parser"] = _choice_parser(spec.choices)
        options["metavar"] = "[" + "|".join(str(c) for c in spec.choices) + "]"
    if spec.base is bool:
        name = ".".join(part.replace("_", "-") for part in spec.path)
        option = typer.Option(f"{spec.flag}/--no-{name}", **options)
    else:
        option = typer.Option(spec.flag, **options)
    annotation = list[base] if spec.multiple else base
    return inspect.Parameter(
        spec.param,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[annotation | None, option],
    )


def _choice_parser(choices: tuple[Any, ...]) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        for choice in choices:
            if str(choice) == value:
                return choice
        shown = ", ".join(repr(str(c)) for c in choices)
        raise typer.BadParameter(f"{value!r} is not one of {shown}.")

    return parse


NULL = object()
"""What a flag given as ``null`` stands for until the config is resolved (None: not given)."""


def _null_parser(choices: tuple[Any, ...] | None) -> Callable[[str], Any]:
    check = _choice_parser(choices) if choices is not None else (lambda value: value)

    def parse(value: str) -> Any:
        return NULL if value == "null" else check(value)

    return parse


def _set(data: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
    data[path[-1]] = value


def _own_flags(signature: inspect.Signature) -> set[str]:
    """The flags a command already declares itself (to refuse a clash with a field's flag)."""
    names = set()
    for param in signature.parameters.values():
        extras = (
            typing.get_args(param.annotation)[1:]
            if typing.get_origin(param.annotation) is Annotated
            else ()
        )
        decls = [d for e in extras for d in (getattr(e, "param_decls", None) or ())]
        decls += [e.default for e in extras if isinstance(getattr(e, "default", None), str)]
        for decl in decls or ["--" + param.name.replace("_", "-")]:
            names.update(str(decl).split("/"))
    return names


class ConfigFlags:
    """The config flags a user gave to one command, and how to apply them."""

    def __init__(
        self, model: type[BaseModel], given: dict[tuple[str, ...], Any], show: bool
    ) -> None:
        self.model = model
        self.given = given
        self.show = show

    def _flag_of(self, loc: tuple[Any, ...]) -> str:
        names = tuple(str(part) for part in loc if isinstance(part, str))
        if not names:  # a rule across fields of the whole config
            return "config"
        for path in self.given:  # the flag given at or below the failing location
            if path[: len(names)] == names:
                return "--" + ".".join(p.replace("_", "-") for p in path)
        return "--" + ".".join(p.replace("_", "-") for p in names)

    def resolve(self, config: Path | None, extra: dict[str, Any] | None = None) -> Any:
        """The config: the YAML at ``config`` (or the model's defaults), then ``extra`` (values
        from a command's own options, by field name), then the flags given, validated.

        With ``--show-config``, print the result as YAML and exit 0.
        """
        from gravity.io import load_yaml_model

        base = load_yaml_model(config, self.model) if config else self.model()
        data = base.model_dump()
        data.update(extra or {})
        for path, value in self.given.items():
            _set(data, path, value)
        try:
            cfg = self.model.model_validate(data)
        except ValidationError as exc:
            problem = validation_problems(exc, "flags", self.model)[0]
            loc = tuple(exc.errors()[0].get("loc", ()))
            raise GravityError(f"{self._flag_of(loc)}: {printable(problem.reason)}") from None
        if self.show:
            typer.echo(config_yaml(cfg), nl=False)
            raise typer.Exit(0)
        return cfg


def config_yaml(cfg: BaseModel) -> str:
    """``cfg`` as the YAML a ``--config`` file would hold."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: 10x faster on a run config
    data = cfg.model_dump(mode="json")
    return yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True)


def config_flags(
    model: type[BaseModel], panel: str = "Config fields (also YAML keys)"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a typer command taking ``flags: ConfigFlags``: it gains a flag for every
    scalar field of ``model`` and ``--show-config``."""
    specs = field_flags(model)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "flags"]
        clash = _own_flags(signature.replace(parameters=own)) & {s.flag for s in specs}
        if clash:
            raise TypeError(f"{func.__name__}: options clash with config fields: {sorted(clash)}")
        show = inspect.Parameter(
            "show_config",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[
                bool,
                typer.Option("--show-config", help="Print the resolved config as YAML and exit."),
            ],
        )
        params = own + [_parameter(s, panel) for s in specs] + [show]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            given = {}
            for spec in specs:
                value = kwargs.pop(spec.param)
                if value is not None:
                    given[spec.path] = (
                        list(value) if spec.multiple else None if value is NULL else value
                    )
            flags = ConfigFlags(model, given, kwargs.pop("show_config"))
            return func(**kwargs, flags=flags)

        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    return decorate
