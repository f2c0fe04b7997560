"""Build profiles from questionnaire answers (by item number) and country priors."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gravity.errors import GravityError, InputError, validation_problems
from gravity.io import load_yaml_model, reading
from gravity.profiles.io import with_country_priors
from gravity.profiles.models import WVS, Demographics, Interests, UserProfile
from gravity.profiles.questionnaires import AnswerError, score_bfi10, score_pvq21

Answers = list[float] | dict[int, float]


class AnswersFile(BaseModel):
    """The questionnaire route's input file (YAML or JSON).

    ``bfi10``/``pvq21`` are answer lists in item order, or mappings item number -> answer.
    """

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    demographics: dict[str, Any] = Field(default_factory=dict)
    bfi10: Answers | None = None
    pvq21: Answers | None = None
    pvq_reversed: bool = False
    wvs: WVS | None = None
    interests: Interests | None = None


def profile_from_answers(answers: AnswersFile, country: str | None = None) -> UserProfile:
    """Score the questionnaires and compose a ``UserProfile`` (culture facets from the country)."""
    if answers.bfi10 is None and answers.pvq21 is None:
        raise AnswerError("bfi10/pvq21: give answers to at least one questionnaire")
    demographics = dict(answers.demographics)
    if country is not None:
        demographics["country"] = country
    if "country" not in demographics:
        raise AnswerError("demographics.country: missing (or pass --country)")
    try:  # checked before the id digest below serializes the answers
        checked = Demographics.model_validate(demographics)
    except ValidationError as exc:
        raise InputError(
            validation_problems(exc, "answers", Demographics, prefix=("demographics",))
        ) from None
    big_five = score_bfi10(answers.bfi10) if answers.bfi10 is not None else None
    schwartz = (
        score_pvq21(answers.pvq21, pvq_reversed=answers.pvq_reversed)
        if answers.pvq21 is not None
        else None
    )
    digest = hashlib.sha256(
        json.dumps(answers.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()[:8]
    profile = UserProfile(
        id=answers.id or f"q-{digest}",
        source="questionnaire",
        demographics=checked,
        wvs=answers.wvs,
        schwartz=schwartz,
        big_five=big_five,
        interests=answers.interests,
    )
    return with_country_priors(profile)


def profile_from_answers_file(path: str | Path, country: str | None = None) -> UserProfile:
    """Read an answers file and build its profile; errors name the file and field.

    A ``country`` given here (the ``--country`` flag) must be checked by the caller: errors
    about the country are reported against the file.
    """
    path = Path(path)
    with reading(path):
        answers = load_yaml_model(path, AnswersFile)
        try:
            return profile_from_answers(answers, country=country)
        except AnswerError as exc:
            raise GravityError(f"{path}: {exc}") from None
        except InputError as exc:
            raise InputError([replace(p, source=path) for p in exc.problems]) from None
        except ValidationError as exc:
            raise InputError(validation_problems(exc, path, UserProfile)) from None
