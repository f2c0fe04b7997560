"""Seeded sampler: ``n`` diverse reader profiles for a country.

Culture-level facets (Hofstede, WVS) come from the country priors. Individual-level facets are
drawn around documented defaults (all fields of ``SamplerConfig``):

- Big Five: normal around ``big_five_mean`` (population midpoints) with ``big_five_sd``, clipped to
  1-5.
- Schwartz: normal around ``schwartz_mean``, the pan-cultural value hierarchy (benevolence,
  universalism and self-direction most important; power least; Schwartz & Bardi 2001), shifted
  by ``culture_shift`` times the country's WVS position: traditional countries raise tradition
  and conformity, self-expression countries raise self-direction, stimulation and universalism and
  lower security. Clipped to 1-6.
- Interests: genres, themes, reading goals and dislikes picked from the vocabularies below;
  readers high in openness pick more genres.

Same config + seed -> byte-identical output.
"""

from __future__ import annotations

import random
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gravity.profiles.countries import normalize_country
from gravity.profiles.culture import country_priors
from gravity.profiles.models import (
    BIG_FIVE_TRAITS,
    SCHWARTZ_VALUES,
    BigFive,
    Demographics,
    Interests,
    Schwartz,
    UserProfile,
)

DEFAULT_LANGUAGES: dict[str, str] = {
    "US": "en",
    "GB": "en",
    "AU": "en",
    "CA": "en",
    "NZ": "en",
    "IE": "en",
    "IN": "en",
    "BR": "pt-BR",
    "PT": "pt",
    "JP": "ja",
    "CN": "zh",
    "TW": "zh",
    "KR": "ko",
    "DE": "de",
    "AT": "de",
    "FR": "fr",
    "ES": "es",
    "MX": "es",
    "AR": "es",
    "CO": "es",
    "CL": "es",
    "IT": "it",
    "NL": "nl",
    "RU": "ru",
    "TR": "tr",
    "PL": "pl",
    "SE": "sv",
    "NG": "en",
    "ZA": "en",
    "EG": "ar",
    "SA": "ar",
    "ID": "id",
    "VN": "vi",
    "TH": "th",
}


Word = Annotated[str, Field(min_length=1, max_length=80)]
Phrase = Annotated[str, Field(min_length=1, max_length=200)]
Words = Annotated[list[Word], Field(min_length=1, max_length=1000)]
Phrases = Annotated[list[Phrase], Field(min_length=1, max_length=1000)]
Education = Literal[
    "primary", "secondary", "vocational", "bachelor", "master", "doctorate", "other"
]


class SamplerConfig(BaseModel):
    """Distributions the sampler draws individual-level facets from.

    Every config that validates samples valid profiles: ages within 13-120, non-empty lists of
    short words, weights that are not all zero.
    """

    model_config = ConfigDict(extra="forbid")

    big_five_mean: dict[str, Annotated[float, Field(ge=1, le=5)]] = Field(
        default_factory=lambda: {t: 3.0 for t in BIG_FIVE_TRAITS},
        description="Mean of each Big Five trait (1-5).",
    )
    big_five_sd: float = Field(
        default=0.7, gt=0, le=2, description="Standard deviation of each Big Five trait."
    )
    schwartz_mean: dict[str, Annotated[float, Field(ge=1, le=6)]] = Field(
        default_factory=lambda: {
            "benevolence": 4.9,
            "universalism": 4.6,
            "self_direction": 4.6,
            "security": 4.5,
            "conformity": 4.1,
            "achievement": 4.0,
            "hedonism": 3.9,
            "stimulation": 3.6,
            "tradition": 3.6,
            "power": 3.0,
        },
        description="Mean raw score of each Schwartz value (1-6).",
    )
    schwartz_sd: float = Field(
        default=0.6, gt=0, le=2, description="Standard deviation of each Schwartz value."
    )
    culture_shift: float = Field(
        default=0.25, ge=0, le=1, description="How far the WVS position moves value means."
    )
    age_range: tuple[Annotated[int, Field(ge=13, le=120)], Annotated[int, Field(ge=13, le=120)]] = (
        Field(default=(18, 75), description="Youngest and oldest age, within 13-120.")
    )
    genders: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=40)]], Field(min_length=1)
    ] = Field(
        default_factory=lambda: ["female", "male", "non-binary"],
        description="Genders drawn, weighted by gender_weights.",
    )
    gender_weights: list[Annotated[float, Field(ge=0, le=1e6)]] = Field(
        default_factory=lambda: [0.49, 0.49, 0.02],
        description="One weight per entry of genders.",
    )
    educations: Annotated[list[Education], Field(min_length=1)] = Field(
        default_factory=lambda: ["secondary", "vocational", "bachelor", "master", "doctorate"],
        description="Education levels drawn (uniformly).",
    )
    occupations: Words = Field(
        description="Occupations drawn (uniformly).",
        default_factory=lambda: [
            "teacher",
            "nurse",
            "software engineer",
            "student",
            "retired",
            "shop owner",
            "accountant",
            "farmer",
            "civil servant",
            "designer",
            "journalist",
            "electrician",
            "physician",
            "sales manager",
            "researcher",
            "homemaker",
        ],
    )
    genres: Phrases = Field(
        description="Genres that favourite genres and dislikes are drawn from.",
        default_factory=lambda: [
            "literary fiction",
            "mystery",
            "science fiction",
            "fantasy",
            "romance",
            "history",
            "biography",
            "philosophy",
            "poetry",
            "adventure",
            "horror",
            "self-help",
            "classics",
            "satire",
            "travel writing",
        ],
    )
    themes: Phrases = Field(
        description="Themes that a reader's themes are drawn from.",
        default_factory=lambda: [
            "family",
            "justice",
            "freedom",
            "tradition",
            "ambition",
            "friendship",
            "faith",
            "nature",
            "identity",
            "power",
            "love",
            "survival",
            "community",
            "curiosity",
            "duty",
            "rebellion",
        ],
    )
    reading_goals: Phrases = Field(
        description="Reading goals that a reader's goals are drawn from.",
        default_factory=lambda: [
            "relax after work",
            "learn about other cultures",
            "understand history",
            "be moved emotionally",
            "think about big questions",
            "improve myself",
            "share books with my family",
            "escape into other worlds",
        ],
    )

    def model_post_init(self, _context: object) -> None:
        missing = set(BIG_FIVE_TRAITS) - set(self.big_five_mean)
        if missing:
            raise ValueError(f"big_five_mean lacks {sorted(missing)}")
        missing = set(SCHWARTZ_VALUES) - set(self.schwartz_mean)
        if missing:
            raise ValueError(f"schwartz_mean lacks {sorted(missing)}")
        unknown = sorted(set(self.big_five_mean) - set(BIG_FIVE_TRAITS))
        if unknown:
            raise ValueError(f"big_five_mean: unknown trait(s) {unknown}")
        unknown = sorted(set(self.schwartz_mean) - set(SCHWARTZ_VALUES))
        if unknown:
            raise ValueError(f"schwartz_mean: unknown value(s) {unknown}")
        if len(self.genders) != len(self.gender_weights):
            raise ValueError("genders and gender_weights differ in length")
        if sum(self.gender_weights) <= 0:
            raise ValueError("gender_weights: at least one weight must be above 0")
        if self.age_range[0] > self.age_range[1]:
            raise ValueError("age_range: the first age must not exceed the second")


def _clip(value: float, low: float, high: float) -> float:
    return round(min(high, max(low, value)), 2)


def _value_shifts(trad_sec: float, surv_self: float, weight: float) -> dict[str, float]:
    return {
        "tradition": -weight * trad_sec,
        "conformity": -weight * trad_sec * 0.5,
        "self_direction": weight * surv_self,
        "stimulation": weight * surv_self * 0.5,
        "universalism": weight * surv_self * 0.5,
        "security": -weight * surv_self * 0.5,
    }


def sample_profiles(
    country: str, n: int, seed: int = 0, config: SamplerConfig | None = None
) -> list[UserProfile]:
    """Draw ``n`` profiles for ``country``; deterministic for (country, n, seed, config)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    cfg = config or SamplerConfig()
    code = normalize_country(country)
    priors = country_priors(code)
    shifts = (
        _value_shifts(
            priors.wvs.traditional_secular, priors.wvs.survival_self_expression, cfg.culture_shift
        )
        if priors.wvs
        else {}
    )
    profiles = []
    for index in range(n):
        # One stream per profile: profile i does not depend on n.
        rng = random.Random(f"gravity-sampler:{code}:{seed}:{index}")
        big_five, schwartz = _draw_traits(rng, cfg, shifts)
        # The draws stay in this order (genres, demographics, the other interests): a profile
        # of a given (country, seed, index) is the same in every version.
        n_genres = 2 + (big_five.openness >= 3.5) + (big_five.openness >= 4.2)
        genres = rng.sample(cfg.genres, k=min(n_genres, len(cfg.genres)))
        demographics = Demographics(
            country=code,
            age=rng.randint(*cfg.age_range),
            gender=rng.choices(cfg.genders, weights=cfg.gender_weights)[0],
            language=DEFAULT_LANGUAGES.get(code),
            education=rng.choice(cfg.educations),  # type: ignore[arg-type]
            occupation=rng.choice(cfg.occupations),
        )
        profiles.append(
            UserProfile(
                id=f"{code.lower()}-s{seed}-{index:04d}",
                source="sampled",
                demographics=demographics,
                hofstede=priors.hofstede,
                wvs=priors.wvs,
                schwartz=schwartz,
                big_five=big_five,
                interests=_draw_interests(rng, cfg, genres),
            )
        )
    return profiles


def _draw_traits(
    rng: random.Random, cfg: SamplerConfig, shifts: dict[str, float]
) -> tuple[BigFive, Schwartz]:
    """Big Five (1-5) and Schwartz values (1-6, shifted by the country's culture), clipped."""
    big_five = BigFive(
        **{
            t: _clip(rng.gauss(cfg.big_five_mean[t], cfg.big_five_sd), 1, 5)
            for t in BIG_FIVE_TRAITS
        }
    )
    schwartz = Schwartz(
        **{
            v: _clip(rng.gauss(cfg.schwartz_mean[v] + shifts.get(v, 0.0), cfg.schwartz_sd), 1, 6)
            for v in SCHWARTZ_VALUES
        }
    )
    return big_five, schwartz


def _draw_interests(rng: random.Random, cfg: SamplerConfig, genres: list[str]) -> Interests:
    """Themes, one disliked genre (not a liked one) and reading goals around ``genres``."""
    others = [g for g in cfg.genres if g not in genres]
    themes = rng.sample(cfg.themes, k=min(2 + rng.randint(0, 1), len(cfg.themes)))
    dislikes = rng.sample(others, k=min(1, len(others)))
    goals = rng.sample(cfg.reading_goals, k=min(1 + rng.randint(0, 1), len(cfg.reading_goals)))
    return Interests(genres=genres, themes=themes, dislikes=dislikes, reading_goals=goals)
