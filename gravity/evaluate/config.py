"""Configuration of ``gravity evaluate`` (and the ``evaluate`` section of a run config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gravity.llm.config import BackendConfig
from gravity.renamed import refuse_renamed


class SystemSpec(BaseModel):
    """One system under comparison.

    kind ``base``: the base model, no profile in the prompt; ``prompt``: the base model with the
    reader's profile in the prompt; ``model``: any model directory, hub id or trained output
    (``sft``, ``naive``, ``gravity``), prompted with the profile as in training.
    """

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
    kind: Literal["base", "prompt", "model"] = "model"
    model: str | None = Field(default=None, description="Model for kind 'model'.")

    @model_validator(mode="after")
    def _model(self) -> SystemSpec:
        if self.kind == "model" and not self.model:
            raise ValueError(f"system '{self.name}': kind 'model' needs a model")
        return self


class EvalConfig(BaseModel):
    """How systems are compared on held-out readers and books."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(
        default="book-description",
        min_length=1,
        description="The task systems are evaluated on: a built-in task's name or a task "
        "folder's path (its judge wording and templates).",
    )
    systems: list[SystemSpec] = Field(
        default_factory=lambda: [
            SystemSpec(name="base", kind="base"),
            SystemSpec(name="prompt", kind="prompt"),
        ],
    )
    base_model: str = Field(default="smollm2", description="Model of the base/prompt systems.")
    generation: BackendConfig = Field(
        default_factory=BackendConfig,
        description="Backend settings for the systems ('model' is set per system).",
    )
    judge: BackendConfig = Field(default_factory=BackendConfig, description="The persona judge.")
    protocol: Literal["pairwise", "ranking"] = Field(
        default="pairwise",
        description="pairwise: every pair of systems judged in both orders (the judge's "
        "probability averaged over both orders; a one-hot verdict that flips is a tie); "
        "ranking: the best of all candidates, once per rotation.",
    )
    judge_method: Literal["auto", "likelihood", "constrained"] = Field(
        default="auto",
        description="likelihood: read the probabilities of the answer labels (backends that can "
        "score: transformers); constrained: schema-constrained JSON; auto: likelihood where "
        "the backend can score, else constrained.",
    )
    focus: str = Field(
        default="gravity",
        description="The system whose paired differences against every other are reported.",
    )
    controls: Literal["all", "alignment", "off"] = Field(
        default="all",
        description="Controls in the report: all: the positive control (each text against the "
        "same system's text for another reader on the same item), the oracle control (texts "
        "made from profile fields, no model) and the negative control (the focus system "
        "against itself under another seed), by alignment and by the judge (6 more judge calls "
        "and 1 more description per case); alignment: the same by alignment only; off: none.",
    )
    catalog: Path | None = Field(
        default=None, description="Held-out catalog; default: the task's own catalog."
    )
    items_per_reader: int = Field(
        default=2, ge=1, description="Held-out items each reader is asked about."
    )
    max_new_tokens: int = Field(
        default=160, ge=8, description="Token limit of a system's description."
    )
    temperature: float = Field(
        default=0.7, ge=0, le=2, description="Sampling temperature of the systems."
    )
    judge_max_new_tokens: int = Field(
        default=24, ge=8, description="Token limit of a constrained (JSON) judge answer."
    )
    bootstrap: int = Field(
        default=2000, ge=100, description="Bootstrap resamples (readers; readers x books)."
    )
    bootstrap_method: Literal["t", "BCa", "percentile"] = Field(
        default="t",
        description="CI method. t: mean +- t quantile x standard error, which holds its 95% "
        "level on simulated null data from 8 readers up (a paired difference whose readers "
        "share books takes its standard error clustered two ways, by reader and by book); BCa, "
        "percentile: scipy.stats.bootstrap over readers (BCa excluded 0 on 11-14% of null "
        "data at 8 readers).",
    )
    min_readers: int = Field(
        default=5,
        ge=1,
        description="Fewer readers than this in a cell: the report says 'too few readers'.",
    )
    seed: int = Field(default=0, description="Seed of book choice, sampling and the judge.")
    train_data: list[Path] = Field(
        default_factory=list,
        description="Training runs/exports: evaluation refuses readers or books found in them "
        "(default: the data each evaluated model folder records in train_config.yaml).",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return refuse_renamed(data, set(cls.model_fields))

    @model_validator(mode="after")
    def _unique(self) -> EvalConfig:
        names = [s.name for s in self.systems]
        if len(set(names)) != len(names):
            raise ValueError(f"system names must be unique: {names}")
        if len(names) < 2:
            raise ValueError("compare at least two systems")
        return self
