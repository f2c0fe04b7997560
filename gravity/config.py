"""Run configuration: pydantic models loadable from YAML.

A field has the same name in Python and in YAML; every scalar field is also a CLI flag derived
from its name (``--field-name``, nested sections joined by dots: see ``gravity.flags``).
``RunConfig`` composes the stage configs that ``gravity run`` executes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gravity.evaluate.config import EvalConfig
from gravity.events.infer import InferConfig
from gravity.io import load_yaml_model
from gravity.profiles.countries import normalize_country
from gravity.profiles.sampler import SamplerConfig
from gravity.renamed import refuse_renamed
from gravity.synth.config import GenerateConfig
from gravity.taskspec import DEFAULT_TASK
from gravity.train import TrainConfig

__all__ = ["PlanConfig", "ProfilesStage", "RunConfig", "load_yaml_model"]


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
    events: Path | None = Field(
        default=None, description="Events folder (`gravity events import`): readers inferred."
    )
    infer: InferConfig = Field(
        default_factory=InferConfig, description="How readers are inferred from `events`."
    )

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        return [normalize_country(c) for c in value]


class PlanConfig(_Config):
    """Throughput figures for the time estimate of ``gravity run --dry-run`` (nothing else reads
    them). Unset, a stage that runs the embedded model on the ``transformers`` backend uses the
    figures measured on a 2-core CPU (README, Performance); any other stage's time is left
    unestimated until a figure is given."""

    tokens_per_s: float | None = Field(
        default=None,
        gt=0,
        description="Completion tokens per second of the generating backends (embedded model "
        "on a 2-core CPU, transformers, batch 16: 148.1).",
    )
    prompt_tokens_per_s: float | None = Field(
        default=None,
        gt=0,
        description="Prompt tokens read per second; likelihood judging reads only prompts "
        "(embedded model on a 2-core CPU: 350).",
    )
    train_pairs_per_s: float | None = Field(
        default=None,
        gt=0,
        description="DPO training pairs per second (embedded model on a 2-core CPU: 0.091 "
        "LoRA, 0.082 full).",
    )
    reference: Path | None = Field(
        default=None,
        description="metrics.json of a reference evaluation: its per-reader SDs give the "
        "smallest effect this run's held-out readers can detect (80% power, two-sided 5%).",
    )


def _heldout_default() -> ProfilesStage:
    return ProfilesStage(n_per_country=1, seed=1)


class RunConfig(_Config):
    """Everything ``gravity run`` needs; each stage section has its own defaults.

    Stages: training readers (``profiles``) and held-out readers (``heldout``); a seeded split of
    the catalog into training books and ``heldout_items`` evaluation books; pair synthesis in each
    of ``modes``; export; training of ``train_systems``; evaluation of base, prompt and the
    trained systems on held-out readers and books.
    """

    out_dir: Path = Field(default=Path("runs/demo"), description="Where every stage writes.")
    task: str | None = Field(
        default=None,
        description="The task of every stage (a built-in name or a task folder); sets "
        "generate.task and evaluate.task. Default: theirs (book-description).",
    )
    profiles: ProfilesStage = Field(default_factory=ProfilesStage)
    heldout: ProfilesStage = Field(default_factory=_heldout_default)
    heldout_items: int = Field(default=12, ge=1, description="Catalog items kept for evaluation.")
    catalog: Path | None = Field(
        default=None,
        description="Catalog file, or an events folder (its most rated items); default: the "
        "task's own catalog.",
    )
    modes: list[Literal["gravity", "naive"]] = Field(
        default_factory=lambda: ["gravity", "naive"], description="Pair synthesis modes to run."
    )
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    test_size: float = Field(default=0.0, ge=0, lt=1, description="Export test split (readers).")
    train: TrainConfig = Field(default_factory=TrainConfig)
    train_systems: list[Literal["sft", "naive", "gravity"]] = Field(
        default_factory=lambda: ["sft", "naive", "gravity"],
        description="Systems to train: sft and gravity on gravity pairs, naive on naive pairs.",
    )
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    plan: PlanConfig = Field(
        default_factory=PlanConfig, description="Figures for the `--dry-run` time estimate."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return refuse_renamed(data, set(cls.model_fields))

    def _one_task(self) -> None:
        """One task for the whole run: `task`, or the one section that names a task (the
        readers' inference from events speaks the run's task too)."""
        sections = {
            "generate": self.generate,
            "evaluate": self.evaluate,
            "profiles.infer": self.profiles.infer,
            "heldout.infer": self.heldout.infer,
        }
        named = {f"{k}.task": v.task for k, v in sections.items() if v.task != DEFAULT_TASK}
        if self.task is not None:
            named = {"task": self.task, **named}
        if len(set(named.values())) > 1:
            shown = ", ".join(f"{k} '{v}'" for k, v in named.items())
            raise ValueError(f"one task per run: {shown} differ")
        task = next(iter(named.values()), None)
        if task is None:
            return
        self.generate = self.generate.model_copy(update={"task": task})
        self.evaluate = self.evaluate.model_copy(update={"task": task})
        for stage in ("profiles", "heldout"):
            section = getattr(self, stage)
            infer = section.infer.model_copy(update={"task": task})
            setattr(self, stage, section.model_copy(update={"infer": infer}))

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        self._one_task()
        if "naive" in self.train_systems and "naive" not in self.modes:
            raise ValueError("train_systems has 'naive' but modes does not generate naive pairs")
        if {"sft", "gravity"} & set(self.train_systems) and "gravity" not in self.modes:
            raise ValueError("sft and gravity train on gravity pairs: add 'gravity' to modes")
        return self
