"""Reader profiles: models, country priors, questionnaires, sampler and file I/O."""

from gravity.profiles.countries import country_name, normalize_country
from gravity.profiles.culture import country_priors
from gravity.profiles.io import dump_profiles, load_many, load_profiles, with_country_priors
from gravity.profiles.models import (
    FACETS,
    WVS,
    BigFive,
    Demographics,
    Hofstede,
    Interests,
    Schwartz,
    UserProfile,
)
from gravity.profiles.questionnaires import score_bfi10, score_pvq21
from gravity.profiles.sampler import SamplerConfig, sample_profiles

__all__ = [
    "FACETS",
    "WVS",
    "BigFive",
    "Demographics",
    "Hofstede",
    "Interests",
    "SamplerConfig",
    "Schwartz",
    "UserProfile",
    "country_name",
    "country_priors",
    "dump_profiles",
    "load_many",
    "load_profiles",
    "normalize_country",
    "sample_profiles",
    "score_bfi10",
    "score_pvq21",
    "with_country_priors",
]
