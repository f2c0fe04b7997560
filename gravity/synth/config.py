"""Configuration of the synthesis stage (``gravity generate`` and the ``generate`` section of a
run config)."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gravity.llm.config import BackendConfig

Facet = Literal["interests", "values", "personality", "culture"]
SYNTH_FACETS: tuple[Facet, ...] = typing.get_args(Facet)


class FilterConfig(BaseModel):
    """Quality filters applied to every pair; each failure is a counted reject with a reason."""

    model_config = ConfigDict(extra="forbid")

    min_words: int = Field(default=15, ge=1, description="Shorter descriptions are rejected.")
    max_words: int = Field(default=120, ge=1, description="Longer descriptions are rejected.")
    on_truncation: Literal["trim", "reject"] = Field(
        default="trim",
        description="An output cut by the token limit: trim it to its last full sentence "
        "(then length-checked as usual), or reject it.",
    )
    near_duplicate_threshold: float | None = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Reject pairs whose chosen and rejected embeddings (MiniLM) have cosine "
        "similarity above this; null disables the check.",
    )
    language: str | None = Field(
        default=None,
        description="ISO 639-1 code every description must be written in (e.g. 'en'); "
        "null skips the check.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> FilterConfig:
        if self.min_words > self.max_words:
            raise ValueError("min_words must not exceed max_words")
        return self


class GenerateConfig(BaseModel):
    """How pairs are synthesized. Every field is a YAML key; every scalar one also a CLI flag."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["gravity", "naive"] = Field(
        default="gravity",
        description="gravity: profile-grounded pairs; naive: the paper's ungrounded baseline "
        "(two generic descriptions ranked by a generic quality judgment).",
    )
    facets: list[Facet] = Field(
        default_factory=lambda: list(SYNTH_FACETS),
        description="Profile facets a scenario is written for (one or more).",
    )
    scenarios_per_facet: int = Field(
        default=1, ge=1, le=20, description="Scenarios (pairs) per reader, book and facet."
    )
    max_books: int = Field(default=3, ge=1, description="Books per reader (seeded choice).")
    books: Path | None = Field(
        default=None,
        description="Book catalog (CSV, JSONL, parquet): id, title, author, description "
        "(10-4000 characters); optional year, genres. Default: the starter catalog.",
    )
    rejected_strategy: Literal["generic", "contrasting"] = Field(
        default="generic",
        description="generic: written with no profile; contrasting: written for the opposite "
        "pole of the same facet.",
    )
    contrast_genres: list[str] | None = Field(
        default=None,
        description="Genres a contrasting reader's favourites are drawn from; null: the "
        "sampler's genres (in `gravity run`, those of the run's profiles.sampler).",
    )
    seed: int = Field(default=0, description="Seed of book choice and of every LLM call.")
    scenario_tokens: int = Field(default=80, ge=8, description="Token limit of a scenario.")
    description_tokens: int = Field(
        default=160, ge=16, description="Token limit of a chosen or rejected description."
    )
    temperature: float = Field(default=0.8, ge=0, le=2, description="Sampling temperature.")
    top_p: float = Field(default=0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_attempts: int = Field(default=2, ge=1, le=10, description="Tries per output (new seed).")
    filters: FilterConfig = Field(default_factory=FilterConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)

    @field_validator("facets")
    @classmethod
    def _facets(cls, value: list[Facet]) -> list[Facet]:
        if not value:
            raise ValueError("at least one facet")
        return list(dict.fromkeys(value))
