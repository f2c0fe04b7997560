"""The intent graph as synthesis uses it: the books to write for a reader, the intent a book
serves for them (the user -> intent -> book path), and an intent the book serves that they do
not hold (the ``other_intent`` hard negative).

Readers are matched to graph users by profile id (``events.infer.reader_id`` of the user id, as
profiles inferred from the same events without pseudonymization are named), books to graph items
by catalog id (``events.books.book_id`` of the item id, as ``books_from_events`` names them). A
reader or book the graph does not know gets no recommendation and no path: callers count it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gravity.books import Book

# The intents a book the graph has no intent for is taken to serve: the scorer's best few.
LEARNED_SERVES = 3


@dataclass(frozen=True)
class IntentPath:
    """The best user -> intent -> book path of one reader and book."""

    intent: str  # the intent's label
    # "graph": the reader holds it and the book serves it, both edges of the graph; "book": the
    # book serves it, the reader's side is the scorer's; "learned": both sides are the scorer's
    source: str
    user_holds: float  # the reader's weight on it in the graph (0: not held in the graph)


class IntentIndex:
    """Recommendations, paths and other intents from a built graph, by profile and book id."""

    def __init__(self, graph: object) -> None:
        from gravity.events.books import book_id
        from gravity.events.infer import reader_id
        from gravity.intents.scorer import Scorer

        self.scorer = scorer = Scorer(graph)  # type: ignore[arg-type]
        self.users: dict[str, int] = {}
        self.items: dict[str, int] = {}
        for node, k in sorted(scorer.index.items()):  # by node id: the first of a clash wins
            if node.startswith("u:"):
                self.users.setdefault(reader_id(node[2:]), k)
            elif node.startswith("i:"):
                self.items.setdefault(book_id(node[2:]), k)
        self.column = {int(node): c for c, node in enumerate(scorer.items)}
        self.rated: dict[int, set[int]] = {}
        for src, dst, _ in graph.edges_of("rated"):  # type: ignore[attr-defined]
            self.rated.setdefault(scorer.index[src], set()).add(scorer.index[dst])
        # A graph built with --split left the split's held-out ratings out of its edges: they
        # are still books the reader rated, and never recommended to them.
        for user, item in _split_pairs(graph):
            u, i = scorer.index.get(f"u:{user}"), scorer.index.get(f"i:{item}")
            if u is not None and i is not None:
                self.rated.setdefault(u, set()).add(i)
        self._other: dict[tuple[str, str, str], str | None] = {}

    @classmethod
    def load(cls, path: str | Path) -> IntentIndex:
        """The index of the graph folder ``path`` (``gravity intents build``)."""
        from gravity.intents.graph import read_graph

        return cls(read_graph(path))

    def knows(self, profile_id: str) -> bool:
        """Whether the reader is a user of the graph."""
        return profile_id in self.users

    @property
    def n_intents(self) -> int:
        """How many intents the graph has."""
        return len(self.scorer.intents)

    def rated_books(self, profile_id: str) -> set[str]:
        """Catalog ids of the items the reader rated (the split's held-out ratings included)."""
        user = self.users.get(profile_id)
        if user is None:
            return set()
        from gravity.events.books import book_id

        return {book_id(self.scorer.ids[i][2:]) for i in self.rated.get(user, set())}

    def recommend(self, profile_id: str, catalog: list[Book], k: int) -> list[Book]:
        """The ``k`` catalog books the graph scores highest for the reader, leaving out books
        they rated and books that are not items of the graph; [] for a reader it does not know.
        Returned in catalog-id order (the order of the record ids), not by score."""
        from gravity.intents.metrics import top_k

        user = self.users.get(profile_id)
        if user is None:
            return []
        rated = self.rated.get(user, set())
        # by id, so that ties do not depend on the order of the catalog file
        ordered = sorted(catalog, key=lambda b: b.id)
        pool = [(b, self.items[b.id]) for b in ordered if b.id in self.items]
        pool = [(b, node) for b, node in pool if node not in rated]
        if not pool:
            return []
        scores = self.scorer.item_scores([user])[0]
        chosen = top_k([scores[self.column[node]] for _, node in pool], k)
        return sorted((pool[j][0] for j in chosen), key=lambda b: b.id)

    def path(self, profile_id: str, book: str) -> IntentPath | None:
        """The reader's best path to ``book`` (a catalog id): through an intent the reader holds
        and the book serves (both edges of the graph) where there is one, the best of those by
        the scorer; else the scorer's best path (``source`` says which side it inferred).
        None when the graph knows either not, or has no intent at all."""
        import numpy as np

        user, item = self.users.get(profile_id), self.items.get(book)
        if user is None or item is None:
            return None
        scorer = self.scorer
        held = scorer.held.get(user, {})
        both = [c for c in scorer.serves.get(item, []) if held.get(c, 0.0) > 0.0]
        if both:
            pool = np.array(both, dtype=np.int64)
            s = scorer.score(user, "holds", pool) + scorer.score(item, "serves", pool)
            j = min(range(len(both)), key=lambda j: (-float(s[j]), both[j]))
            c = both[j]
            return IntentPath(scorer.labels[scorer.ids[c]], "graph", round(held[c], 4))
        paths = scorer.paths(user, item)
        if not paths:
            return None
        best = paths[0]
        return IntentPath(
            best["intent"], "book" if best["item_serves"] else "learned", best["user_holds"]
        )

    def other_intent(self, profile_id: str, book: str, chosen: str) -> str | None:
        """An intent ``book`` serves that the reader does not hold (and that is not
        ``chosen``): of those, the one the scorer rates lowest for the reader. The intents a
        book serves are its graph edges; for a book the graph has no intent for, the
        ``LEARNED_SERVES`` intents the scorer rates highest for it (as its path is inferred).
        None when there is none (the book serves only intents the reader holds)."""
        key = (profile_id, book, chosen)
        if key not in self._other:
            self._other[key] = self._other_intent(profile_id, book, chosen)
        return self._other[key]

    def _other_intent(self, profile_id: str, book: str, chosen: str) -> str | None:
        import numpy as np

        user, item = self.users.get(profile_id), self.items.get(book)
        if user is None or item is None:
            return None
        scorer = self.scorer
        served = scorer.serves.get(item)
        if not served and len(scorer.intents):
            fit = scorer.score(item, "serves", scorer.intents)
            order = sorted(range(len(fit)), key=lambda j: (-float(fit[j]), int(scorer.intents[j])))
            served = [int(scorer.intents[j]) for j in order[:LEARNED_SERVES]]
        held = scorer.held.get(user, {})
        pool = [
            c
            for c in served or []
            if held.get(c, 0.0) == 0.0 and scorer.labels[scorer.ids[c]] != chosen
        ]
        if not pool:
            return None
        scores = scorer.score(user, "holds", np.array(pool, dtype=np.int64))
        j = min(range(len(pool)), key=lambda j: (float(scores[j]), pool[j]))
        return scorer.labels[scorer.ids[pool[j]]]


def _split_pairs(graph: object) -> set[tuple[str, str]]:
    """The held-out (user id, item id) pairs of the split a graph was built without; an error
    when the graph names a split file that is gone (its pairs would be recommended back)."""
    split = graph.manifest.get("split")  # type: ignore[attr-defined]
    if not split:
        return set()
    from gravity.errors import GravityError
    from gravity.intents.evaluate import read_split

    path = Path(split["path"])
    if not path.is_file():
        raise GravityError(
            f"intent_graph: the graph was built without the held-out ratings of {path}, which "
            "is gone: without it those books could be recommended to the readers who rated them"
        )
    pairs, desc = read_split(path)
    if desc["digest"] != split.get("digest"):
        raise GravityError(f"intent_graph: {path} is not the split the graph was built without")
    return pairs


def intent_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    """Pairs written for each intent (the intents facet's pairs; other pairs may carry the
    intent of their reader's path to the book, but were not written for it)."""
    return dict(
        sorted(
            Counter(
                r["intent"] for r in records if r.get("facet") == "intents" and r.get("intent")
            ).items()
        )
    )
