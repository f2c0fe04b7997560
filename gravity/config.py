"""Run configuration: pydantic models loadable from YAML.

A field has the same name in Python, in YAML and (where a CLI flag exists) as ``--field-name``.
``RunConfig`` composes the stage configs that ``gravity run`` executes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gravity.errors import GravityError
from gravity.profiles.countries import normalize_country
from gravity.profiles.sampler import SamplerConfig

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: str | Path, model: type[M]) -> M:
    """Validate a YAML file into ``model``; errors name the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GravityError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise GravityError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise GravityError(f"{path}: <file>: expected a mapping of config fields")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "<file>"
            lines.append(f"{path}: {field}: {err['msg'].removeprefix('Value error, ')}")
        raise GravityError("\n".join(lines)) from None


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfilesStage(_Config):
    """Where the run's readers come from: sampled per country, and/or loaded from files."""

    countries: list[str] = Field(
        default_factory=lambda: ["US", "BR", "JP", "IN"],
        description="Countries to sample readers for (any accepted spelling).",
    )
    n_per_country: int = Field(default=4, ge=0, description="Sampled readers per country.")
    seed: int = Field(default=0, description="Sampler seed.")
    files: list[Path] = Field(
        default_factory=list, description="Profile files to load as well (paths from the CWD)."
    )
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        return [normalize_country(c) for c in value]


class RunConfig(_Config):
    """Everything ``gravity run`` needs; each stage section has its own defaults."""

    out_dir: Path = Field(default=Path("runs/demo"), description="Where every stage writes.")
    profiles: ProfilesStage = Field(default_factory=ProfilesStage)
