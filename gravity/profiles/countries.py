"""Country names and codes: ISO 3166 alpha-2, alpha-3 and common names, case-insensitive."""

from __future__ import annotations

import difflib
from functools import lru_cache

import pycountry

from gravity.errors import GravityError

# Everyday names that pycountry's official and common names miss.
_ALIASES: dict[str, str] = {
    "usa": "US",
    "u.s.a.": "US",
    "u.s.": "US",
    "america": "US",
    "united states of america": "US",
    "uk": "GB",
    "britain": "GB",
    "great britain": "GB",
    "england": "GB",
    "south korea": "KR",
    "korea": "KR",
    "north korea": "KP",
    "russia": "RU",
    "iran": "IR",
    "vietnam": "VN",
    "taiwan": "TW",
    "czech republic": "CZ",
    "turkey": "TR",
    "macedonia": "MK",
    "holland": "NL",
    "bolivia": "BO",
    "venezuela": "VE",
    "tanzania": "TZ",
    "moldova": "MD",
    "syria": "SY",
    "laos": "LA",
}


class UnknownCountryError(GravityError, ValueError):
    """A country that no ISO code, name or alias matches.

    It is also a ValueError so that pydantic validators report it as a field error.
    """


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    index: dict[str, str] = {}
    for country in pycountry.countries:
        for attr in ("alpha_2", "alpha_3", "name", "common_name", "official_name"):
            value = getattr(country, attr, None)
            if value:
                index[value.casefold()] = country.alpha_2
    index.update(_ALIASES)
    return index


def normalize_country(value: str) -> str:
    """Return the ISO alpha-2 code for ``value``; raise ``UnknownCountryError`` with suggestions."""
    key = " ".join(str(value).split()).casefold()
    code = _index().get(key)
    if code is not None:
        return code
    names = sorted({c.name for c in pycountry.countries} | {a.title() for a in _ALIASES})
    close = difflib.get_close_matches(str(value).strip().title(), names, n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownCountryError(f"unknown country '{value}'{hint}")


def country_name(code: str) -> str:
    """Common English name for an ISO alpha-2 code."""
    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return code
    return getattr(country, "common_name", None) or country.name
