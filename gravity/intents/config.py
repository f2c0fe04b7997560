"""Configuration of the intent graph: how it is built (``BuildConfig``, with its scorer's
``ScorerConfig``) and how it is evaluated (``EvalConfig``). Light to import: the command line
derives its flags from these models."""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gravity.llm.config import BackendConfig

System = Literal[
    "intents",
    "intents_no_path",
    "intents_shuffled",
    "translation",
    "popularity",
    "itemknn",
    "als",
    "bpr",
    "lightgcn",
]
SYSTEMS: tuple[System, ...] = typing.get_args(System)
# The systems that are the graph's scorer with other intents or without the path term.
SCORER_NAMES = ("intents", "intents_no_path", "intents_shuffled", "translation")


class ScorerConfig(BaseModel):
    """The translation-embedding scorer (user + relation ~ item), trained with BPR loss."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(default=32, ge=2, le=512, description="Embedding size of every node.")
    epochs: int = Field(default=15, ge=1, le=1000, description="Passes over the edges.")
    batch_size: int = Field(default=4096, ge=16, description="Edges per training step.")
    lr: float = Field(default=0.02, gt=0, le=1, description="Learning rate (sparse Adam).")
    l2: float = Field(default=1e-5, ge=0, description="L2 penalty on the embeddings of each batch.")
    threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="CPU threads while training (small steps: 1 is fastest).",
    )
    seed: int = Field(default=0, description="Seed of initialisation and negative sampling.")
    intent_paths: bool = Field(
        default=True,
        description="Add the user -> intent -> item path term to the score (false: translation "
        "only).",
    )


class LightGCNConfig(BaseModel):
    """The ``lightgcn`` baseline (``gravity.intents.lightgcn``); a grid point overrides these."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(default=64, ge=2, le=512, description="Embedding size.")
    layers: int = Field(default=3, ge=1, le=8, description="Propagation layers.")
    l2: float = Field(
        default=1e-4, ge=0, description="L2 penalty on the batch's layer-0 embeddings."
    )
    epochs: int = Field(default=20, ge=1, le=1000, description="Passes over the interactions.")
    batch_size: int = Field(
        default=8192, ge=16, description="Interactions per step (each step propagates the graph)."
    )
    lr: float = Field(default=0.01, gt=0, le=1, description="Learning rate (Adam).")


class BuildConfig(BaseModel):
    """How the graph is built (YAML keys and CLI flags share these names)."""

    model_config = ConfigDict(extra="forbid")

    countries: list[str] | None = Field(default=None, description="Only users from these.")
    max_items: int | None = Field(
        default=None, ge=0, description="Extract intents for the N most-rated items only."
    )
    min_item_events: int = Field(
        default=1, ge=1, description="Items with fewer training events are left out."
    )
    max_intents: int = Field(default=4, ge=1, le=8, description="Intents per item.")
    neighbours: int = Field(default=3, ge=0, le=10, description="Similar items shown.")
    round_size: int = Field(default=32, ge=1, description="Items per retrieval round.")
    max_reviews: int = Field(
        default=3, ge=0, le=10, description="Review texts of an item shown to the LLM."
    )
    max_review_chars: int = Field(
        default=300, ge=50, le=2000, description="Characters kept of each review shown."
    )
    max_shelves: int = Field(
        default=12,
        ge=0,
        le=100,
        description="Shelves (an item's categories, in their order) shown to the LLM; repeats "
        "(ignoring case) dropped and, with 10 or more items sent, those more than half of them "
        "carry left out.",
    )
    cluster_threshold: float = Field(default=0.35, gt=0, lt=2, description="Cosine distance.")
    implicit_weight: float = Field(
        default=0.5, gt=0, le=1, description="Weight of a rated edge for an event with no rating."
    )
    user_intents: int = Field(default=10, ge=1, description="Strongest intents kept per user.")
    densify_k: int = Field(default=10, ge=0, description="shares_intent edges per item.")
    backend: BackendConfig = Field(
        default_factory=BackendConfig, description="The LLM that extracts item intents."
    )
    max_new_tokens: int = Field(
        default=96, ge=16, description="Token limit of an extraction answer."
    )
    max_attempts: int = Field(
        default=2, ge=1, le=10, description="Tries per item (a new seed each) before a reject."
    )
    temperature: float = Field(
        default=0.3, ge=0, description="Above 0 so that a retry (a new seed) can differ."
    )
    seed: int = Field(default=0, description="Seed of the extraction calls.")
    scorer: ScorerConfig = Field(
        default_factory=ScorerConfig, description="The scorer trained on the graph's edges."
    )


Point = dict[str, float]
GRID_KEYS = {
    "scorer": {"dim", "epochs", "lr", "l2", "batch_size"},
    "itemknn": {"K"},
    "als": {"factors", "regularization", "alpha", "iterations"},
    "bpr": {"factors", "learning_rate", "regularization", "iterations"},
    "lightgcn": set(LightGCNConfig.model_fields),
}


class TuningGrid(BaseModel):
    """The grid each system is tuned over on the validation split: the same number of points
    for every system (the same budget; popularity has nothing to tune). ``scorer`` serves the
    four intent scorers (``intents``, ``intents_no_path``, ``intents_shuffled``,
    ``translation``); its points
    override the graph's own ``ScorerConfig``. The others' points are keyword arguments of the
    ``implicit`` models (ALS ``alpha`` scales the interaction weights into confidence), and
    ``lightgcn``'s fields of ``LightGCNConfig``."""

    model_config = ConfigDict(extra="forbid")

    scorer: list[Point] = Field(
        default_factory=lambda: [
            {"dim": 32, "l2": 1e-5},
            {"dim": 64, "l2": 1e-5},
            {"dim": 32, "l2": 1e-4},
            {"dim": 64, "l2": 1e-4},
        ]
    )
    itemknn: list[Point] = Field(
        default_factory=lambda: [{"K": 20}, {"K": 50}, {"K": 100}, {"K": 200}]
    )
    als: list[Point] = Field(
        default_factory=lambda: [
            {"factors": 32, "regularization": 0.01, "alpha": 1.0, "iterations": 15},
            {"factors": 64, "regularization": 0.01, "alpha": 10.0, "iterations": 15},
            {"factors": 64, "regularization": 0.1, "alpha": 40.0, "iterations": 15},
            {"factors": 128, "regularization": 0.1, "alpha": 10.0, "iterations": 15},
        ]
    )
    bpr: list[Point] = Field(
        default_factory=lambda: [
            {"factors": 32, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
            {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
            {"factors": 64, "learning_rate": 0.05, "regularization": 0.01, "iterations": 100},
            {"factors": 64, "learning_rate": 0.01, "regularization": 0.001, "iterations": 100},
        ]
    )
    # BPR's pattern: size, depth (layers here) and regularisation; epochs fixed, as iterations.
    lightgcn: list[Point] = Field(
        default_factory=lambda: [
            {"dim": 64, "layers": 2, "l2": 1e-4, "epochs": 20},
            {"dim": 64, "layers": 3, "l2": 1e-4, "epochs": 20},
            {"dim": 64, "layers": 3, "l2": 1e-3, "epochs": 20},
            {"dim": 128, "layers": 3, "l2": 1e-4, "epochs": 20},
        ]
    )

    @model_validator(mode="after")
    def _same_budget(self) -> TuningGrid:
        sizes = {name: len(getattr(self, name)) for name in GRID_KEYS}
        if len(set(sizes.values())) != 1 or not min(sizes.values()):
            raise ValueError(f"every grid needs the same number of points (>= 1): {sizes}")
        for name, keys in GRID_KEYS.items():
            for point in getattr(self, name):
                bad = sorted(set(point) - keys)
                if bad:
                    raise ValueError(f"{name}: unknown setting(s) {bad}; known: {sorted(keys)}")
        return self

    def points(self, system: str) -> list[Point]:
        """The points system ``system`` is tuned over ([{}] for popularity)."""
        if system == "popularity":
            return [{}]
        key = "scorer" if system in SCORER_NAMES else system
        ints = {"dim", "epochs", "batch_size", "K", "factors", "iterations", "layers"}
        return [{k: int(v) if k in ints else v for k, v in p.items()} for p in getattr(self, key)]


class EvalConfig(BaseModel):
    """What is measured and how the baselines are set (YAML keys and CLI flags share these
    names)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=10, ge=1, le=1000, description="Cut-off of Recall, NDCG and HR.")
    cold_max: int = Field(default=3, ge=0, description="Cold-start: at most this many events.")
    head_share: float = Field(default=0.2, gt=0, lt=1, description="Share of items in the head.")
    max_users: int | None = Field(default=None, ge=1, description="Seeded sample of users.")
    systems: list[System] = Field(
        default_factory=lambda: list(SYSTEMS),
        description="The graph's scorer (intents) and the baselines ranked beside it.",
    )
    relevant_min: float | None = Field(
        default=None,
        description="A held-out rating counts as relevant from this value up (default: 8 on a "
        "scale above 5, as Book-Crossing's 1-10; else 4, as 4+ stars of 5).",
    )
    val_share: float = Field(
        default=0.2, gt=0, lt=1, description="Share of each user's training ratings to tune on."
    )
    val_users: int | None = Field(
        default=2000, ge=1, description="Seeded sample of validation users (None: all)."
    )
    grid: TuningGrid = Field(
        default_factory=TuningGrid, description="The points each system is tuned over."
    )
    bootstrap: int = Field(default=1000, ge=100, description="Bootstrap resamples of users.")
    level: float = Field(default=0.95, ge=0.5, lt=1, description="Confidence level.")
    threads: int = Field(default=2, ge=1, description="Threads of the implicit baselines.")
    seed: int = Field(default=0, description="Seed of the user sample and the baselines.")
