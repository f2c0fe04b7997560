"""Render a profile (or some of its facets) as text for prompts, through ``prompts/profile.j2``."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from gravity.profiles.countries import country_name
from gravity.profiles.models import FACETS, UserProfile
from gravity.prompts import render

PROFILE_TEMPLATE = "profile.j2"


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


def render_profile(profile: UserProfile, facets: Sequence[str] | None = None) -> str:
    """A short natural-language summary of a profile; ``facets`` picks parts (default: all)."""
    chosen = check_facets(facets)
    return render(
        PROFILE_TEMPLATE,
        profile=profile,
        facets=chosen,
        country_name=country_name(profile.country),
    )
