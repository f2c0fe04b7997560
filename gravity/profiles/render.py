"""Render a profile (or some of its facets) as text for prompts, through ``prompts/profile.j2``.

How the person and their interests are named is wording a task supplies (``ProfileWording``,
task.yaml ``profile:``): the profile fields stay (``favourite_books`` holds a reader's favourite
items whatever the task), only their labels change. Without a wording, the book task's."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gravity.profiles.countries import country_name
from gravity.profiles.models import FACETS, UserProfile
from gravity.prompts import render

PROFILE_TEMPLATE = "profile.j2"


class ProfileWording(BaseModel):
    """How a rendered profile names the person and each interests field; an empty label leaves
    that field out of prompts. ``{noun}`` and ``{plural}`` are filled with the task's item noun.
    The defaults name no kind of item; ``BOOK_WORDING`` is the book task's."""

    model_config = ConfigDict(extra="forbid")

    person: str = Field(
        default="reader",
        min_length=1,
        max_length=30,
        description="What one user is called ('reader', 'shopper'): the profile's first word, "
        "and the occupation shown where the profile has none.",
    )
    genres: str = Field(default="Interests", max_length=60, description="interests.genres")
    favourite_books: str = Field(
        default="Favourite {plural}", max_length=60, description="interests.favourite_books"
    )
    favourite_authors: str = Field(
        default="Favourite creators", max_length=60, description="interests.favourite_authors"
    )
    themes: str = Field(
        default="Themes they look for", max_length=60, description="interests.themes"
    )
    dislikes: str = Field(default="Dislikes", max_length=60, description="interests.dislikes")
    reading_goals: str = Field(
        default="Goals", max_length=60, description="interests.reading_goals"
    )

    @field_validator("person")
    @classmethod
    def _person(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    def filled(self, noun: str, plural: str) -> ProfileWording:
        """The wording with ``{noun}`` and ``{plural}`` filled in."""
        return ProfileWording(
            **{
                k: v.replace("{noun}", noun).replace("{plural}", plural)
                for k, v in self.model_dump().items()
            }
        )


BOOK_WORDING = ProfileWording(
    person="reader",
    genres="Favourite genres",
    favourite_books="Favourite books",
    favourite_authors="Favourite authors",
    themes="Themes they look for",
    dislikes="Dislikes",
    reading_goals="Reads to",
)
"""The book task's wording (and the wording of a profile rendered without a task)."""


def check_facets(facets: Sequence[str] | None) -> list[str]:
    """The facets to render (default: all); an unknown name raises ``ValueError`` naming the
    closest valid one."""
    chosen = list(FACETS) if facets is None else list(facets)
    for name in chosen:
        if name not in FACETS:
            close = difflib.get_close_matches(name, FACETS, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown facet '{name}'; {hint}valid: {', '.join(FACETS)}")
    return chosen


def render_profile(
    profile: UserProfile,
    facets: Sequence[str] | None = None,
    wording: ProfileWording | None = None,
) -> str:
    """A short natural-language summary of a profile; ``facets`` picks parts (default: all);
    ``wording`` names the person and the interests (default: ``BOOK_WORDING``)."""
    chosen = check_facets(facets)
    return render(
        PROFILE_TEMPLATE,
        profile=profile,
        facets=chosen,
        country_name=country_name(profile.country),
        words=(wording or BOOK_WORDING).model_dump(),
    )
