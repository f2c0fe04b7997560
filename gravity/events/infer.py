"""Reader profiles inferred from event histories, every field with its provenance.

- demographics: country and age from the user record only (country through the profiles'
  resolution; ``default_country`` where the data has none, marked ``given``); nothing invented.
- interests (``observed``): favourite books and authors from the highest ratings (or, without
  ratings, the most reads), dislikes from the lowest; genres from item categories and shelves of
  the books the reader liked or read, else from LLM tags of those items' metadata (``text``).
- values and personality (``text``): from the reader's reviews by the LLM, with evidence quotes
  that must occur in the reviews and a confidence; without usable text, the country's priors
  (``country_prior``: the sampler's means for the country). Culture (Hofstede, WVS) is a
  country-level construct and always comes from the country tables (``country_prior``).
- neighbours: a user with few events of their own borrows genres and authors from the users they
  interact with (relational events), weighted by the number of interactions (``neighbours``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gravity.errors import GravityError
from gravity.llm.config import BackendConfig
from gravity.profiles.countries import UnknownCountryError, normalize_country
from gravity.profiles.culture import country_priors
from gravity.profiles.models import (
    BIG_FIVE_TRAITS,
    SCHWARTZ_VALUES,
    BigFive,
    Demographics,
    Interests,
    Provenance,
    Schwartz,
    UserProfile,
)
from gravity.profiles.sampler import SamplerConfig, sample_profiles
from gravity.taskspec import DEFAULT_TASK, Task, load_task

if TYPE_CHECKING:
    from gravity.events.store import EventsData

PRIOR_DETAIL = "population means shifted by the country's WVS position (the sampler's means)"
# Shelves that say where a book is, not what it is.
STATUS_SHELVES = {
    "read",
    "to-read",
    "currently-reading",
    "favorites",
    "favourites",
    "owned",
    "books",
    "kindle",
    "wishlist",
    "default",
}
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class InferConfig(BaseModel):
    """How profiles are inferred from events (YAML keys and CLI flags share these names)."""

    model_config = ConfigDict(extra="forbid")

    min_events: int = Field(default=1, ge=1, description="Personal events a user needs.")
    countries: list[str] | None = Field(default=None, description="Only users from these.")
    max_users: int | None = Field(default=None, ge=1, description="First N users (by id).")
    max_users_per_country: int | None = Field(
        default=None,
        ge=1,
        description="First N users (by id) of each country, so that a few readers still come "
        "from every country (the users of a dump are often mostly from one).",
    )
    split: Literal["all", "train", "heldout"] = Field(
        default="all",
        description="Which users: all, or one side of a seeded split by user id (so training "
        "and held-out readers from one events folder never overlap).",
    )
    heldout_share: float = Field(default=0.2, gt=0, lt=1, description="Share of held-out users.")
    default_country: str | None = Field(
        default=None, description="Country of users whose data names none (marked 'given')."
    )
    like_share: float = Field(
        default=0.7, gt=0, lt=1, description="Ratings at or above this share of the scale: liked."
    )
    dislike_share: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="Ratings at or below this share of the scale: disliked.",
    )
    max_favourites: int = Field(
        default=5, ge=1, le=30, description="Favourite books, authors and dislikes kept."
    )
    max_genres: int = Field(default=5, ge=1, le=30, description="Favourite genres kept.")
    thin_events: int = Field(
        default=5, ge=0, description="Users with fewer rated or read events borrow from neighbours."
    )
    text_inference: bool = Field(default=True, description="Values/personality from reviews.")
    tag_items: bool = Field(default=True, description="LLM-tag genres of uncategorised items.")
    max_reviews: int = Field(default=5, ge=1, le=20, description="Reviews sent per reader.")
    max_review_chars: int = Field(default=600, ge=50, le=5000, description="Per review sent.")
    max_evidence: int = Field(default=3, ge=1, le=10, description="Quotes kept per field.")
    max_evidence_chars: int = Field(default=200, ge=20, le=300, description="Per quote kept.")
    evidence_only: bool = Field(
        default=False,
        description="Keep only observed and text-inferred individual facets (drop values, "
        "personality and interests that came from country priors or neighbours).",
    )
    pseudonymize: bool = Field(default=False, description="Replace user ids by keyed hashes.")
    key_env: str = Field(default="GRAVITY_PSEUDONYM_KEY", description="Env var with the key.")
    backend: BackendConfig = Field(default_factory=BackendConfig)
    max_new_tokens: int = Field(default=320, ge=16, description="Token limit of an LLM answer.")
    max_attempts: int = Field(default=3, ge=1, le=10, description="Tries per LLM answer.")
    fast_stop: int = Field(
        default=32,
        ge=0,
        description="Stop an LLM step whose first N answers are all invalid (0: never stop).",
    )
    temperature: float = Field(default=0.3, ge=0, description="LLM sampling temperature.")
    seed: int = Field(default=0, description="Seed of the train/heldout split and the LLM.")
    task: str = Field(
        default=DEFAULT_TASK,
        min_length=1,
        description="The task whose words the LLM steps use (its tag vocabulary, item noun, "
        "what reviews are called): a built-in task's name or a task folder. In `gravity run`, "
        "the run's task.",
    )


@dataclass
class InferResult:
    """Profiles plus what happened: users skipped by reason, LLM rejects, item tags."""

    profiles: list[UserProfile]
    skipped: Counter[str] = field(default_factory=Counter)
    llm_rejects: Counter[str] = field(default_factory=Counter)
    item_tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: Counter[str] = field(default_factory=Counter)


@dataclass
class _Reader:
    id: str
    country: str | None
    age: int | None
    personal: list[dict[str, Any]] = field(default_factory=list)
    neighbours: Counter[str] = field(default_factory=Counter)


def pseudonym(user_id: str, key: bytes) -> str:
    """A stable keyed hash of a user id (HMAC-SHA256), usable as a profile id."""
    return "u-" + hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


def in_heldout(user_id: str, cfg: InferConfig) -> bool:
    """Whether a user falls on the held-out side of the seeded split (stable per id)."""
    digest = hashlib.sha256(f"gravity-events-split:{cfg.seed}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < cfg.heldout_share


def reader_id(user_id: str) -> str:
    """The profile id of an events user (not pseudonymized): the user id where it is a safe
    id, else a hash of it."""
    if _ID_OK.match(user_id):
        return user_id
    return "h-" + hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:20]


def load_readers(data: EventsData, cfg: InferConfig) -> tuple[dict[str, _Reader], Counter[str]]:
    """Users with at least ``min_events`` personal events (and in ``countries``), their events
    and their relational neighbours; plus counts of users left out, by reason."""
    skipped: Counter[str] = Counter()
    wanted = {normalize_country(c) for c in cfg.countries} if cfg.countries else None
    users = data.users.to_pylist()
    events = data.events
    counts = Counter(
        u
        for u, k in zip(events.column("user_id").to_pylist(), events.column("kind").to_pylist())
        if k == "personal"
    )
    readers: dict[str, _Reader] = {}
    per_country: Counter[str | None] = Counter()
    quota = cfg.max_users_per_country
    full = False  # a cap is reached: the rest are not examined, but still counted
    for user in sorted(users, key=lambda u: u["id"]):
        if full:
            skipped["not_examined_after_max_users"] += 1
            continue
        if counts.get(user["id"], 0) < cfg.min_events:
            skipped["fewer_events_than_min_events"] += 1
            continue
        if wanted is not None and user["country"] not in wanted:
            skipped["country_not_selected"] += 1
            continue
        if cfg.split != "all" and (in_heldout(user["id"], cfg) != (cfg.split == "heldout")):
            skipped[f"not_in_{cfg.split}_split"] += 1
            continue
        if quota is not None and per_country[user["country"]] >= quota:
            skipped["country_has_max_users"] += 1
            continue
        readers[user["id"]] = _Reader(user["id"], user["country"], user["age"])
        per_country[user["country"]] += 1
        full = (cfg.max_users is not None and len(readers) >= cfg.max_users) or (
            quota is not None
            and wanted is not None
            and all(per_country[c] >= quota for c in wanted)
        )
    _attach_events(readers, events)
    return readers, skipped


def _attach_events(readers: dict[str, _Reader], events: Any) -> None:
    """Each reader's personal events, and relational events counted as neighbours both ways."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # Only the selected readers' rows become Python objects (the full dump has a million).
    ids = pa.array(sorted(readers), pa.string())
    mask = pc.or_kleene(
        pc.is_in(events.column("user_id"), value_set=ids),
        pc.fill_null(pc.is_in(events.column("other_user_id"), value_set=ids), False),
    )
    for row in events.filter(mask).to_pylist():
        reader = readers.get(row["user_id"])
        if row["kind"] == "personal":
            if reader is not None:
                reader.personal.append(row)
            continue
        other = row["other_user_id"]
        # Interactions count both ways: following someone and being followed both tie tastes.
        if reader is not None:
            reader.neighbours[other] += 1
        if other in readers:
            readers[other].neighbours[row["user_id"]] += 1


def _label(item: dict[str, Any] | None, item_id: str) -> str:
    if not item or not item.get("title"):
        return f"item {item_id}"[:200]
    author = f" by {item['author']}" if item.get("author") else ""
    return f"{item['title']}{author}"[:200]


def behaviour_interests(
    reader: _Reader, items: dict[str, dict[str, Any]], cfg: InferConfig, scale: tuple[float, float]
) -> dict[str, Any]:
    """Favourite and disliked books and authors, and genres, from the reader's own events.

    Returns the lists plus the evidence behind them and the items that need LLM tags.
    """
    low, high = scale
    like = low + cfg.like_share * (high - low)
    dislike = low + cfg.dislike_share * (high - low)
    ratings, reads, shelves = _tally(reader)
    mean = {i: sum(v) / len(v) for i, v in ratings.items()}
    liked = sorted(
        (i for i, v in mean.items() if v >= like), key=lambda i: (-mean[i], -reads[i], i)
    )
    disliked = sorted((i for i, v in mean.items() if v <= dislike), key=lambda i: (mean[i], i))
    basis = "rating"
    if not liked and not ratings:  # no ratings at all: the most read items stand in
        liked = [i for i, n in sorted(reads.items(), key=lambda x: (-x[1], x[0])) if n >= 2]
        basis = "reads"
    fav_authors, bad_authors = _authors(mean, liked, reads, items, (like, dislike), basis)
    dislikes = sorted(bad_authors)[: cfg.max_favourites]
    if len(dislikes) < cfg.max_favourites:
        # A book whose author is already disliked as a whole says nothing new.
        books = [i for i in disliked if (items.get(i) or {}).get("author") not in bad_authors]
        dislikes += [_label(items.get(i), i) for i in books][: cfg.max_favourites - len(dislikes)]
    genres, untagged = _genres(liked or [i for i, _ in reads.most_common()], items, shelves)
    top_books = liked[: cfg.max_favourites]
    return {
        "favourite_books": [_label(items.get(i), i) for i in top_books],
        "favourite_authors": fav_authors[: cfg.max_favourites],
        "dislikes": dislikes,
        "genres": genres[: cfg.max_genres],
        "basis": basis,
        "n_rated": len(ratings),
        "n_read": sum(reads.values()),
        "untagged": untagged[:20],
        "evidence_books": [
            f"{_label(items.get(i), i)}: {mean[i]:g}" if i in mean else _label(items.get(i), i)
            for i in top_books[:3]
        ],
    }


def _tally(reader: _Reader) -> tuple[dict[str, list[float]], Counter[str], Counter[str]]:
    """(item -> ratings, item -> reads, shelf -> count) of the reader's own events; status
    shelves (read, to-read, ...) are not tastes and are left out."""
    ratings: dict[str, list[float]] = defaultdict(list)
    reads: Counter[str] = Counter()
    shelves: Counter[str] = Counter()
    for e in reader.personal:
        if e["value"] is not None:
            ratings[e["item_id"]].append(e["value"])
        if e["action"] in ("read", "interact", "rate", "review"):
            reads[e["item_id"]] += 1
        for s in e["shelves"] or []:
            if s.casefold() not in STATUS_SHELVES:
                shelves[s.casefold()] += 1
    return ratings, reads, shelves


def _authors(
    mean: dict[str, float],
    liked: list[str],
    reads: Counter[str],
    items: dict[str, dict[str, Any]],
    bounds: tuple[float, float],
    basis: str,
) -> tuple[list[str], list[str]]:
    """(favourite authors, best first; disliked authors). Rated: an author with a liked book
    and none disliked is a favourite, one with only disliked books is disliked. Unrated
    (``basis`` reads): the authors of the most read books."""
    like, dislike = bounds
    author_scores: dict[str, list[float]] = defaultdict(list)
    for item_id, value in mean.items():
        author = (items.get(item_id) or {}).get("author")
        if author:
            author_scores[author].append(value)
    fav_authors = sorted(
        (a for a, v in author_scores.items() if max(v) >= like and min(v) > dislike),
        key=lambda a: (-sum(author_scores[a]) / len(author_scores[a]), -len(author_scores[a]), a),
    )
    if basis == "reads":
        per_author: Counter[str] = Counter()
        for item_id in liked:
            author = (items.get(item_id) or {}).get("author")
            if author:
                per_author[author] += reads[item_id]
        fav_authors = [a for a, _ in sorted(per_author.items(), key=lambda x: (-x[1], x[0]))]
    bad_authors = [
        a for a, v in author_scores.items() if max(v) <= dislike and a not in fav_authors
    ]
    return fav_authors, bad_authors


def _genres(
    pool: list[str], items: dict[str, dict[str, Any]], shelves: Counter[str]
) -> tuple[list[str], list[str]]:
    """(genres, most frequent first, from the categories of ``pool`` and the reader's own
    shelves; the items of ``pool`` with no category, to be tagged)."""
    genres: Counter[str] = Counter()
    untagged: list[str] = []
    for item_id in pool:
        cats = (items.get(item_id) or {}).get("categories") or []
        for c in cats:
            if c.casefold() not in STATUS_SHELVES:
                genres[c.casefold()] += 1
        if not cats and item_id in items:
            untagged.append(item_id)
    genres.update({s: n for s, n in shelves.items()})
    ranked = sorted(genres.items(), key=lambda x: (-x[1], x[0]))
    return [g[:200] for g, _ in ranked], untagged


def country_prior_traits(country: str) -> tuple[Schwartz, BigFive]:
    """The country's prior values and traits: the sampler's means (its draw with no spread)."""
    config = SamplerConfig(big_five_sd=1e-9, schwartz_sd=1e-9)
    profile = sample_profiles(country, 1, seed=0, config=config)[0]
    assert profile.schwartz is not None and profile.big_five is not None
    return profile.schwartz, profile.big_five


def _excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + "..."


def reviews_of(reader: _Reader, cfg: InferConfig) -> list[str]:
    """The reader's review texts sent to the LLM: longest first, bounded in count and length."""
    texts = [e["text"] for e in reader.personal if e["text"]]
    texts = sorted(set(texts), key=lambda t: (-len(t), t))[: cfg.max_reviews]
    return [_excerpt(t, cfg.max_review_chars) for t in texts]


def _pseudonymizer(cfg: InferConfig):
    if not cfg.pseudonymize:
        return reader_id
    key = os.environ.get(cfg.key_env, "")
    if len(key) < 16:
        raise GravityError(
            f"--pseudonymize: set {cfg.key_env} to a secret key of at least 16 characters"
        )
    return lambda uid: pseudonym(uid, key.encode("utf-8"))


@dataclass
class _LLMWork:
    """The readers of ``data`` and what the LLM steps would be asked about them: the items to
    tag and each reader's review texts."""

    readers: dict[str, _Reader]
    skipped: Counter[str]
    items: dict[str, dict[str, Any]]
    behaviour: dict[str, dict[str, Any]]
    to_tag: list[str]
    with_text: dict[str, list[str]]

    @classmethod
    def of(cls, data: EventsData, cfg: InferConfig) -> _LLMWork:
        readers, skipped = load_readers(data, cfg)
        needed = {e["item_id"] for r in readers.values() for e in r.personal}
        items = {row["id"]: row for row in data.items.to_pylist() if row["id"] in needed}
        scale = (data.meta.rating_min or 1.0, data.meta.rating_max or 5.0)
        behaviour = {uid: behaviour_interests(r, items, cfg, scale) for uid, r in readers.items()}
        to_tag = sorted(
            {i for b in behaviour.values() if not b["genres"] for i in b["untagged"]}
            if cfg.tag_items
            else set()
        )
        texts = (
            {uid: reviews_of(r, cfg) for uid, r in readers.items()} if cfg.text_inference else {}
        )
        with_text = {uid: t for uid, t in texts.items() if t}
        return cls(readers, skipped, items, behaviour, to_tag, with_text)


def llm_requests(data: EventsData, cfg: InferConfig) -> dict[str, list[Any]]:
    """The requests each LLM step of ``infer_profiles`` would send (first attempts), by step:
    for plans and estimates; nothing is generated."""
    from gravity.events.tasks import tag_requests, traits_requests

    task = infer_task(cfg)
    work = _LLMWork.of(data, cfg)
    return {
        "tag items": tag_requests([work.items[i] for i in work.to_tag], task),
        "traits from reviews": traits_requests(
            [work.with_text[u] for u in sorted(work.with_text)], task
        ),
    }


def infer_task(cfg: InferConfig) -> Task:
    """The task of ``cfg``, checked for what the LLM steps need before any model call: a tag
    vocabulary where items are tagged (else one line naming task.yaml and events.tags)."""
    task = load_task(cfg.task)
    if cfg.tag_items:
        task.tags()
    return task


def infer_profiles(
    data: EventsData, cfg: InferConfig, engine: Any = None, store: Path | None = None
) -> InferResult:
    """Profiles of the users in ``data`` (see the module docstring for each field's source).

    ``engine`` answers the LLM tasks; when None, one is built from ``cfg.backend`` (with the
    result store ``store``) only if some reader needs it.
    """
    default_country = _default_country(cfg)
    rename = _pseudonymizer(cfg)
    task = infer_task(cfg)
    work = _LLMWork.of(data, cfg)
    readers, items, behaviour = work.readers, work.items, work.behaviour
    result = InferResult(profiles=[], skipped=work.skipped)
    to_tag, with_text = work.to_tag, work.with_text
    traits = _llm_tasks(items, to_tag, with_text, cfg, engine, store, result, task)
    _genres_from_tags(behaviour, result, cfg)
    profiles: dict[str, UserProfile] = {}
    for uid, reader in readers.items():
        evidence = (behaviour[uid], traits.get(uid), with_text.get(uid))
        profile = _assemble(reader, *evidence, cfg, default_country, result)
        if profile is not None:
            profiles[uid] = profile
    if not cfg.evidence_only:  # borrowed tastes are neither observed nor read from text
        _lend_from_neighbours(readers, behaviour, profiles, cfg, result, rename)
    for uid, profile in profiles.items():
        if cfg.evidence_only:
            profile = _evidence_only(profile)
        result.profiles.append(profile.model_copy(update={"id": rename(uid)}))
        for path, prov in (profile.provenance or {}).items():
            result.sources[f"{path}: {prov.source}"] += 1
    return result


def _default_country(cfg: InferConfig) -> str | None:
    if cfg.default_country is None:
        return None
    try:
        return normalize_country(cfg.default_country)
    except UnknownCountryError as exc:
        raise GravityError(f"--default-country: {exc}") from None


def _llm_tasks(
    items: dict[str, dict[str, Any]],
    to_tag: list[str],
    with_text: dict[str, list[str]],
    cfg: InferConfig,
    engine: Any,
    store: Path | None,
    result: InferResult,
    task: Task,
) -> dict[str, Any]:
    """Tag ``to_tag`` items (into ``result.item_tags``) and infer traits from the readers' review
    text, in ``task``'s words; user id -> traits, or the reason they were rejected. No engine
    is built when neither step has work."""
    traits: dict[str, Any] = {}
    if not to_tag and not with_text:
        return traits
    from gravity.events.tasks import tag_items, traits_from_reviews
    from gravity.llm import SamplingParams

    _announce(items, to_tag, with_text, cfg, task)

    params = SamplingParams(
        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed
    )
    with _engine(engine, cfg, store) as llm:
        stop = cfg.fast_stop or None
        tagged = tag_items(llm, [items[i] for i in to_tag], params, cfg.max_attempts, stop, task)
        for item_id, tags in zip(to_tag, tagged):
            if isinstance(tags, str):
                result.llm_rejects[f"tag_items: {tags.split(':')[0]}"] += 1
            else:
                result.item_tags[item_id] = tags
        uids = sorted(with_text)
        texts = [with_text[u] for u in uids]
        answers = traits_from_reviews(llm, texts, params, cfg.max_attempts, stop, task)
        for uid, out in zip(uids, answers):
            if isinstance(out, str):
                result.llm_rejects[f"traits: {out.split(':')[0]}"] += 1
            traits[uid] = out
    return traits


def _announce(
    items: dict[str, dict[str, Any]],
    to_tag: list[str],
    with_text: dict[str, list[str]],
    cfg: InferConfig,
    task: Task,
) -> None:
    """Say, before the first call, how many LLM calls each step makes and how long they may
    take."""
    from gravity.events.tasks import tag_requests, traits_requests
    from gravity.plan import announce_step, estimate_step

    steps = {
        "tag items": tag_requests([items[i] for i in to_tag], task),
        "traits from reviews": traits_requests([with_text[u] for u in sorted(with_text)], task),
    }
    for name, requests in steps.items():
        if requests:
            step = estimate_step("profiles", name, cfg.backend, requests, cfg.max_new_tokens)
            print(announce_step(step, cfg.max_attempts, cfg.fast_stop), file=sys.stderr, flush=True)


def _genres_from_tags(
    behaviour: dict[str, dict[str, Any]], result: InferResult, cfg: InferConfig
) -> None:
    """Readers whose liked books carry no genre take the genres and themes the LLM tagged."""
    for b in behaviour.values():
        if not b["genres"] and b["untagged"]:
            tagged = [result.item_tags[i] for i in b["untagged"] if i in result.item_tags]
            counts = Counter(g for t in tagged for g in t["genres"])
            b["genres"] = [g for g, _ in counts.most_common(cfg.max_genres)]
            b["genres_from_tags"] = bool(b["genres"])
            b["themes"] = [t for tag in tagged for t in tag["themes"]][:5]


class _engine:
    """The given engine, or one built (and closed) from the config."""

    def __init__(self, engine: Any, cfg: InferConfig, store: Path | None) -> None:
        self.engine, self.cfg, self.store_path = engine, cfg, store
        self._backend = self._store = None

    def __enter__(self) -> Any:
        if self.engine is not None:
            return self.engine
        from gravity.llm import make_backend
        from gravity.llm.engine import Engine
        from gravity.store import Store

        self._backend = make_backend(self.cfg.backend)
        self._store = Store(self.store_path) if self.store_path else None
        return Engine(self._backend.__enter__(), self._store)

    def __exit__(self, *exc: object) -> None:
        if self._backend is not None:
            self._backend.__exit__(*exc)
        if self._store is not None:
            self._store.close()


def _assemble(
    reader: _Reader,
    b: dict[str, Any],
    traits: Any,
    reviews: list[str] | None,
    cfg: InferConfig,
    default_country: str | None,
    result: InferResult,
) -> UserProfile | None:
    """The reader's profile, each field with its provenance; None (counted) without a country."""
    prov: dict[str, Provenance] = {}
    country_age = _country_and_age(reader, default_country, prov, result)
    if country_age is None:
        return None
    country, age = country_age
    priors = country_priors(country)  # an unknown country is an error naming it, here
    demographics = Demographics(country=country, age=age)
    for facet, value in (("hofstede", priors.hofstede), ("wvs", priors.wvs)):
        if value is not None:
            prov[facet] = Provenance(source="country_prior", detail="country reference table")
    schwartz, big_five = _values_and_traits(country, traits, reviews, cfg, prov)
    return UserProfile(
        id=reader_id(reader.id),
        source="imported",
        demographics=demographics,
        hofstede=priors.hofstede,
        wvs=priors.wvs,
        schwartz=schwartz,
        big_five=big_five,
        interests=_interests(b, prov),
        provenance=prov,
    )


def _country_and_age(
    reader: _Reader,
    default_country: str | None,
    prov: dict[str, Provenance],
    result: InferResult,
) -> tuple[str, int | None] | None:
    """Country (observed, else the configured default) and age (dropped below 13)."""
    country = reader.country
    if country is not None:
        prov["demographics.country"] = Provenance(source="observed", detail="the user's location")
    elif default_country is not None:
        country = default_country
        prov["demographics.country"] = Provenance(source="given", detail="--default-country")
    else:
        result.skipped["no_country_in_data_and_no_default_country"] += 1
        return None
    age = reader.age
    if age is not None and age < 13:
        result.skipped["age_below_13_dropped_from_profile"] += 1
        age = None
    if age is not None:
        prov["demographics.age"] = Provenance(source="observed", detail="the user's record")
    return country, age


def _values_and_traits(
    country: str,
    traits: Any,
    reviews: list[str] | None,
    cfg: InferConfig,
    prov: dict[str, Provenance],
) -> tuple[Schwartz, BigFive]:
    """Schwartz values and Big Five read from review text, else the country's priors."""
    if traits is None or isinstance(traits, str):
        why = "no review text" if traits is None else f"text inference rejected: {traits}"
        prior_prov = Provenance(source="country_prior", detail=f"{PRIOR_DETAIL}; {why}"[:500])
        prov["schwartz"] = prov["big_five"] = prior_prov
        return country_prior_traits(country)
    t = traits.model_dump()
    quotes = [_excerpt(q, cfg.max_evidence_chars) for q in t["evidence"][: cfg.max_evidence]]
    prov["schwartz"] = prov["big_five"] = Provenance(
        source="text",
        evidence=quotes,
        confidence=round(t["confidence"], 3),
        detail=f"LLM ({cfg.backend.model}) on {len(reviews or [])} review(s)",
    )
    return (
        Schwartz(**{v: round(t[v], 2) for v in SCHWARTZ_VALUES}),
        BigFive(**{k: round(t[k], 2) for k in BIG_FIVE_TRAITS}),
    )


def _interests(b: dict[str, Any], prov: dict[str, Provenance]) -> Interests:
    """Interests from reading behaviour, with where each list came from."""
    lists = {k: b[k] for k in ("genres", "favourite_books", "favourite_authors", "dislikes")}
    lists["themes"] = b.get("themes", [])
    basis = "highest ratings" if b["basis"] == "rating" else "most reads"
    for key in ("favourite_books", "favourite_authors"):
        if lists[key]:
            prov[f"interests.{key}"] = Provenance(
                source="observed", evidence=b["evidence_books"], detail=basis
            )
    if lists["dislikes"]:
        prov["interests.dislikes"] = Provenance(source="observed", detail="lowest ratings")
    if lists["genres"]:
        prov["interests.genres"] = (
            Provenance(source="text", detail="LLM tags of the liked books' metadata")
            if b.get("genres_from_tags")
            else Provenance(source="observed", detail="categories and shelves of liked books")
        )
    if lists["themes"]:
        prov["interests.themes"] = Provenance(source="text", detail="LLM tags of item metadata")
    return Interests(**lists)


def _lend_from_neighbours(readers, behaviour, profiles, cfg, result, rename) -> None:
    """Thin readers take genres and authors from their neighbours after their own (marked)."""
    for uid, profile in profiles.items():
        reader = readers[uid]
        if len(reader.personal) >= cfg.thin_events or not reader.neighbours:
            continue
        interests = profile.interests or Interests()
        update: dict[str, list[str]] = {}
        prov = dict(profile.provenance or {})
        for key in ("genres", "favourite_authors"):
            own = list(getattr(interests, key))
            limit = cfg.max_genres if key == "genres" else cfg.max_favourites
            scores: Counter[str] = Counter()
            lenders: Counter[str] = Counter()
            for other, weight in reader.neighbours.items():
                if other not in profiles:
                    continue
                for rank, value in enumerate(behaviour[other][key]):
                    # Earlier entries are stronger tastes; interactions weigh the neighbour.
                    if value not in own:
                        scores[value] += weight / (rank + 1)
                        lenders[other] = weight
            borrowed = [v for v, _ in sorted(scores.items(), key=lambda x: (-x[1], x[0]))]
            borrowed = borrowed[: max(0, limit - len(own))]
            if not borrowed:
                continue
            update[key] = own + borrowed
            who = ", ".join(f"{rename(o)} ({w})" for o, w in lenders.most_common(5))
            prov[f"interests.{key}"] = Provenance(
                source="neighbours",
                detail=(
                    f"first {len(own)} observed, then {len(borrowed)} borrowed from neighbours "
                    f"weighted by interactions: {who}"
                )[:500],
            )
        if update:
            profiles[uid] = profile.model_copy(
                update={"interests": interests.model_copy(update=update), "provenance": prov}
            )


def _evidence_only(profile: UserProfile) -> UserProfile:
    """Drop values and traits that rest on country priors (culture stays: it is country-level)."""
    prov = dict(profile.provenance or {})
    update: dict[str, Any] = {}
    for facet in ("schwartz", "big_five"):
        if prov.get(facet) and prov[facet].source == "country_prior":
            update[facet] = None
            prov.pop(facet)
    update["provenance"] = prov
    return profile.model_copy(update=update)
