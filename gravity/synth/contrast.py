"""Contrasting readers: the opposite pole of one facet, for "contrasting" rejected responses."""

from __future__ import annotations

from gravity.profiles.models import (
    BIG_FIVE_TRAITS,
    SCHWARTZ_VALUES,
    WVS,
    BigFive,
    Hofstede,
    Interests,
    Schwartz,
    UserProfile,
)


def contrast_profile(profile: UserProfile, facet: str, genre_pool: list[str]) -> UserProfile:
    """A copy of ``profile`` with ``facet`` mirrored around its scale's midpoint.

    values: 1-6 scores become 7 - x (the value hierarchy reverses); personality: 6 - x;
    culture: Hofstede 100 - x (clipped at 0), WVS factors negated; interests: favourite genres
    become disliked ones and the rest of ``genre_pool`` the favourites.
    """
    update: dict = {}
    if facet == "values" and profile.schwartz is not None:
        update["schwartz"] = Schwartz(
            **{v: round(7 - getattr(profile.schwartz, v), 2) for v in SCHWARTZ_VALUES}
        )
    elif facet == "personality" and profile.big_five is not None:
        update["big_five"] = BigFive(
            **{t: round(6 - getattr(profile.big_five, t), 2) for t in BIG_FIVE_TRAITS}
        )
    elif facet == "culture":
        if profile.hofstede is not None:
            update["hofstede"] = Hofstede(
                **{
                    k: (None if v is None else max(0.0, 100 - v))
                    for k, v in profile.hofstede.model_dump().items()
                }
            )
        if profile.wvs is not None:
            update["wvs"] = WVS(
                traditional_secular=-profile.wvs.traditional_secular,
                survival_self_expression=-profile.wvs.survival_self_expression,
            )
    elif facet == "interests" and profile.interests is not None:
        liked = set(profile.interests.genres)
        others = [g for g in genre_pool if g not in liked]
        update["interests"] = Interests(
            genres=others[:3] or list(profile.interests.dislikes),
            dislikes=list(profile.interests.genres),
            themes=[],
            reading_goals=[],
        )
    return profile.model_copy(update=update)
