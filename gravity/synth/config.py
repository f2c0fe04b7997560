"""Configuration of the synthesis stage (``gravity generate`` and the ``generate`` section of a
run config)."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gravity.llm.config import BackendConfig
from gravity.renamed import refuse_renamed

Facet = Literal["interests", "values", "personality", "culture", "intents"]
SYNTH_FACETS: tuple[Facet, ...] = typing.get_args(Facet)
# The facets a reader's profile holds; ``intents`` comes from an intent graph instead.
PROFILE_FACETS: tuple[Facet, ...] = ("interests", "values", "personality", "culture")


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

    task: str = Field(
        default="book-description",
        min_length=1,
        description="The task pairs are made for: a built-in task's name (`gravity tasks "
        "list`) or the path of a task folder.",
    )
    mode: Literal["gravity", "naive"] = Field(
        default="gravity",
        description="gravity: profile-grounded pairs; naive: the paper's ungrounded baseline "
        "(two generic descriptions ranked by a generic quality judgment).",
    )
    facets: list[Facet] = Field(
        default_factory=lambda: list(PROFILE_FACETS),
        description="Facets a scenario is written for (one or more): the profile's interests, "
        "values, personality, culture; intents: the intent the graph's path from the reader to "
        "the book goes through (needs intent_graph).",
    )
    scenarios_per_facet: int = Field(
        default=1, ge=1, le=20, description="Scenarios (pairs) per reader, book and facet."
    )
    max_items: int = Field(default=3, ge=1, description="Books per reader.")
    item_selection: Literal["random", "intents"] = Field(
        default="random",
        description="random: a seeded choice from the catalog; intents: the catalog books the "
        "intent graph recommends for the reader, leaving out books they rated (a reader the "
        "graph does not know gets random books, counted in the summary).",
    )
    intent_graph: Path | None = Field(
        default=None,
        description="Graph folder from `gravity intents build`, for item_selection intents, the "
        "intents facet and other_intent negatives.",
    )
    catalog: Path | None = Field(
        default=None,
        description="Catalog (CSV, JSONL, parquet) validated against the task's item schema "
        "(the book task: id, title, author, description of 10-4000 characters; optional year, "
        "genres). Default: the task's own catalog.",
    )
    rejected_strategy: Literal["generic", "contrasting", "other_intent"] = Field(
        default="generic",
        description="generic: written with no profile; contrasting: written for the opposite "
        "pole of the same facet; other_intent (intents facet): written for an intent the book "
        "serves that the reader does not hold, other facets get generic negatives.",
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
    chunk_readers: int = Field(
        default=1000,
        ge=1,
        description="Readers synthesized together (scenarios, pairs, filters), their records "
        "appended before the next readers start: bounds memory; never changes the output.",
    )
    shard: str | None = Field(
        default=None,
        pattern=r"^[0-9]+/[0-9]+$",
        description="I/N: synthesize only the readers of shard I of N (0 <= I < N; a reader's "
        "shard is a hash of its id), for one machine of many; `gravity merge` joins the N "
        "run folders into the run one process would make.",
    )
    filters: FilterConfig = Field(default_factory=FilterConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return refuse_renamed(data, set(cls.model_fields))

    @field_validator("facets")
    @classmethod
    def _facets(cls, value: list[Facet]) -> list[Facet]:
        if not value:
            raise ValueError("at least one facet")
        return list(dict.fromkeys(value))

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            index, count = (int(x) for x in value.split("/"))
            if count < 1 or index >= count:
                raise ValueError(f"'{value}': I/N needs N >= 1 and 0 <= I < N")
            value = f"{index}/{count}"
        return value

    @model_validator(mode="after")
    def _intents(self) -> GenerateConfig:
        uses = [
            name
            for name, used in (
                ("item_selection: intents", self.item_selection == "intents"),
                ("facet intents", "intents" in self.facets),
                ("rejected_strategy: other_intent", self.rejected_strategy == "other_intent"),
            )
            if used
        ]
        if uses and self.intent_graph is None:
            raise ValueError(
                f"{', '.join(uses)} needs intent_graph (a `gravity intents build` folder)"
            )
        if self.rejected_strategy == "other_intent" and "intents" not in self.facets:
            raise ValueError(
                "rejected_strategy other_intent applies to the intents facet: add it to facets"
            )
        if self.rejected_strategy == "contrasting" and "intents" in self.facets:
            raise ValueError(
                "an intent has no opposite pole: with the intents facet use rejected_strategy "
                "other_intent (or generic)"
            )
        return self
