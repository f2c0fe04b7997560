"""Typed, validated reader profiles: one pydantic model per facet, composed by ``UserProfile``.

Scales (documented once, here):
- Hofstede: the published 0-100 index scores; some published values exceed 100 (Greece UAI 112),
  so 0-120 is accepted.
- Schwartz: raw value scores on the 1-6 "how much like you" scale (6 = very much like me), the
  mean of each value's items; centred scores = raw - the respondent's mean rating over all items
  (Schwartz's recommended correction for scale use).
- WVS: the two Inglehart-Welzel cultural-map factor scores (about -3..3).
- Big Five: trait means on a 1-5 scale.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gravity.profiles.countries import normalize_country

FACETS: tuple[str, ...] = ("demographics", "culture", "values", "personality", "interests")
"""Facets a profile can be rendered by (and that scenarios can target).

``culture`` covers Hofstede and the WVS map; ``values`` is Schwartz; ``personality`` is Big Five.
"""

SCHWARTZ_VALUES: tuple[str, ...] = (
    "self_direction",
    "stimulation",
    "hedonism",
    "achievement",
    "power",
    "security",
    "conformity",
    "tradition",
    "benevolence",
    "universalism",
)

# Schwartz's four higher-order values. Hedonism shares elements of openness to change and
# self-enhancement; following common PVQ scoring practice it is counted with openness to change.
HIGHER_ORDER: dict[str, tuple[str, ...]] = {
    "openness_to_change": ("self_direction", "stimulation", "hedonism"),
    "self_enhancement": ("achievement", "power"),
    "conservation": ("security", "conformity", "tradition"),
    "self_transcendence": ("benevolence", "universalism"),
}

BIG_FIVE_TRAITS: tuple[str, ...] = (
    "openness",
    "conscientiousness",
    "extraversion",
    "agreeableness",
    "neuroticism",
)

WVS_ITEMS: tuple[str, ...] = (
    "A008",
    "A165",
    "E018",
    "E025",
    "F063",
    "F118",
    "F120",
    "G006",
    "Y002",
    "Y003",
)
"""WVS items behind the cultural-map factors (answers are accepted by item code)."""

ShortText = Annotated[str, Field(min_length=1, max_length=200)]
TextList = Annotated[list[ShortText], Field(max_length=30)]
HofstedeScore = Annotated[float, Field(ge=0, le=120)]
SchwartzScore = Annotated[float, Field(ge=1, le=6)]
TraitScore = Annotated[float, Field(ge=1, le=5)]
MapScore = Annotated[float, Field(ge=-5, le=5)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Demographics(_Strict):
    """Who the reader is. Only ``country`` is required; it is stored as ISO 3166 alpha-2."""

    country: str = Field(description="Country, as ISO alpha-2, alpha-3 or a common name.")
    age: int | None = Field(default=None, ge=13, le=120)
    gender: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] | None = Field(
        default=None, description="Preferred reading language, BCP-47 style (e.g. 'pt-BR')."
    )
    education: (
        Literal["primary", "secondary", "vocational", "bachelor", "master", "doctorate", "other"]
        | None
    ) = None
    occupation: Annotated[str, Field(min_length=1, max_length=80)] | None = None

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        return normalize_country(value)


class Hofstede(_Strict):
    """Hofstede's six cultural dimensions (0-120; None where the table has no score)."""

    pdi: HofstedeScore | None = Field(default=None, description="Power distance.")
    idv: HofstedeScore | None = Field(default=None, description="Individualism.")
    mas: HofstedeScore | None = Field(default=None, description="Masculinity.")
    uai: HofstedeScore | None = Field(default=None, description="Uncertainty avoidance.")
    lto: HofstedeScore | None = Field(default=None, description="Long-term orientation.")
    ivr: HofstedeScore | None = Field(default=None, description="Indulgence vs restraint.")


class Schwartz(_Strict):
    """Schwartz's ten basic values.

    Only the raw scores (and optionally the mean rating) are stored; centred scores and the four
    higher-order values are derived properties, so they are never stored twice.
    """

    self_direction: SchwartzScore
    stimulation: SchwartzScore
    hedonism: SchwartzScore
    achievement: SchwartzScore
    power: SchwartzScore
    security: SchwartzScore
    conformity: SchwartzScore
    tradition: SchwartzScore
    benevolence: SchwartzScore
    universalism: SchwartzScore
    mean_rating: SchwartzScore | None = Field(
        default=None,
        description="Mean rating over all questionnaire items (MRAT); defaults to the mean of "
        "the ten value scores when unknown.",
    )

    def raw(self) -> dict[str, float]:
        """The ten raw value scores, in canonical order."""
        return {name: getattr(self, name) for name in SCHWARTZ_VALUES}

    @property
    def centred(self) -> dict[str, float]:
        """Value scores minus the respondent's mean rating (positive = above own average)."""
        raw = self.raw()
        mrat = self.mean_rating if self.mean_rating is not None else sum(raw.values()) / len(raw)
        return {name: round(score - mrat, 3) for name, score in raw.items()}

    @property
    def higher_order(self) -> dict[str, float]:
        """Centred scores averaged into Schwartz's four higher-order values."""
        centred = self.centred
        return {
            group: round(sum(centred[v] for v in members) / len(members), 3)
            for group, members in HIGHER_ORDER.items()
        }

    def ranked(self) -> list[str]:
        """Value names from most to least important (by centred score, stable on ties)."""
        centred = self.centred
        return sorted(SCHWARTZ_VALUES, key=lambda v: (-centred[v], SCHWARTZ_VALUES.index(v)))


class WVS(_Strict):
    """Position on the World Values Survey (Inglehart-Welzel) cultural map."""

    traditional_secular: MapScore = Field(
        description="Higher = more secular-rational, lower = more traditional."
    )
    survival_self_expression: MapScore = Field(
        description="Higher = more self-expression, lower = more survival values."
    )
    items: dict[str, float] | None = Field(
        default=None, description="Optional answers to the map's WVS items, by item code."
    )

    @field_validator("items")
    @classmethod
    def _items(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            unknown = sorted(set(value) - set(WVS_ITEMS))
            if unknown:
                raise ValueError(
                    f"unknown WVS item code(s) {unknown}; expected some of {list(WVS_ITEMS)}"
                )
        return value


class BigFive(_Strict):
    """Big Five personality traits on a 1-5 scale."""

    openness: TraitScore
    conscientiousness: TraitScore
    extraversion: TraitScore
    agreeableness: TraitScore
    neuroticism: TraitScore


class Interests(_Strict):
    """What the reader likes to read, and why."""

    genres: TextList = Field(default_factory=list)
    favourite_books: TextList = Field(default_factory=list)
    favourite_authors: TextList = Field(default_factory=list)
    themes: TextList = Field(default_factory=list)
    dislikes: TextList = Field(default_factory=list)
    reading_goals: TextList = Field(default_factory=list)


class Provenance(_Strict):
    """Where one field of a profile came from (profiles inferred from events carry these)."""

    source: Literal["observed", "text", "country_prior", "neighbours", "given"] = Field(
        description="observed: read off the user's own events or record; text: inferred by an "
        "LLM from the user's reviews; country_prior: the country's reference values; neighbours: "
        "borrowed from users they interact with; given: set by the operator (e.g. a default)."
    )
    evidence: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list, max_length=10, description="Quotes or facts the field rests on."
    )
    confidence: float | None = Field(default=None, ge=0, le=1)
    detail: Annotated[str, Field(max_length=500)] | None = None


class UserProfile(_Strict):
    """A reader: demographics plus the culture, values, personality and interests facets."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    source: Literal["manual", "sampled", "questionnaire", "imported"] = "manual"
    demographics: Demographics
    hofstede: Hofstede | None = None
    wvs: WVS | None = None
    schwartz: Schwartz | None = None
    big_five: BigFive | None = None
    interests: Interests | None = None
    provenance: dict[Annotated[str, Field(pattern=r"^[a-z_]+(\.[a-z_]+)?$")], Provenance] | None = (
        Field(default=None, description="Per field path (e.g. 'interests.genres'): its source.")
    )

    @property
    def country(self) -> str:
        """The reader's ISO alpha-2 country code."""
        return self.demographics.country

    def has_facet(self, facet: str) -> bool:
        """Whether the profile holds data for ``facet`` (one of ``FACETS``)."""
        if facet not in FACETS:
            raise ValueError(f"unknown facet '{facet}'; valid: {', '.join(FACETS)}")
        if facet == "demographics":
            return True
        if facet == "culture":
            return self.hofstede is not None or self.wvs is not None
        if facet == "values":
            return self.schwartz is not None
        if facet == "personality":
            return self.big_five is not None
        return self.interests is not None and any(self.interests.model_dump().values())
