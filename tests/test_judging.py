"""Label judging: the strict parser against hostile text, likelihood scoring on the real embedded
model, the store caching label scores, and the naive baseline's both-orders quality labels."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gravity.errors import GravityError
from gravity.judging import Choice, LabelJudge, mean_over_orders, normalise, parse_choice
from gravity.llm.base import ChatRequest
from gravity.llm.engine import Engine, Reject
from gravity.store import Store
from gravity.synth.tasks import QualityJudgeTask
from tests.fakes import ScriptedBackend

LABELS = ["A", "B", "C"]


@pytest.mark.parametrize(
    "text",
    [
        '{"A": 5, "B": 3, "C": 4}',  # ratings, not a choice
        "A great read. I prefer C, then B.",  # the article "A" is no verdict
        "A better one is B.",
        "B",  # a bare letter is free text, not the schema
        '{"choice": "A", "also": "B"}',  # extra keys
        '{"choice": "Α"}',  # Greek capital alpha
        '{"choice": "Ａ"}',  # fullwidth A
        '{"choice": "A\\u200b"}',  # zero-width space
        '{"choice": "a"}',
        '{"choice": "[A]"}',
        '{"choice": "A, B"}',
        '{"choice": ["A"]}',
        '{"choice": null}',
        '{"choice": 1}',
        '{"choice": "D"}',
        '{"choice": "A"} {"choice": "B"}',  # two answers
        '{"choice": "A"',  # truncated
        '```json\n{"choice": "A"}\n```',
        'Sure! {"choice": "A"}',
        '{"Choice": "A"}',
        "[" * 50_000,  # deep nesting
        '["A", "B"]',
        "null",
        "",
    ],
)
def test_parse_choice_rejects_hostile_text(text):
    result = parse_choice(text, LABELS)
    assert isinstance(result, Reject) and result.kind == "judge_unparsable"


@pytest.mark.parametrize("text, label", [('{"choice": "B"}', "B"), (' \n{"choice":"C"}\n', "C")])
def test_parse_choice_accepts_exact_answers(text, label):
    assert parse_choice(text, LABELS) == label


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(), st.dictionaries(st.text(max_size=8), st.text(max_size=4)).map(json.dumps))
)
def test_parse_choice_never_raises_and_never_guesses(text):
    result = parse_choice(text, LABELS)
    if not isinstance(result, Reject):
        assert json.loads(text) == {"choice": result} and result in LABELS


def test_choice_probabilities_and_ties():
    probs = normalise({"A": math.log(0.2), "B": math.log(0.6)})
    assert probs == pytest.approx({"A": 0.25, "B": 0.75})
    assert Choice(probs).best == "B" and Choice(probs).ranking() == ["B", "A"]
    assert Choice({"A": 0.5, "B": 0.5}).best is None


class LabelScorer(ScriptedBackend):
    """A backend that can score: log-probabilities from a policy over (prompt, labels)."""

    def __init__(self, policy) -> None:
        super().__init__(constrains_json=False)
        self.policy = policy
        self.scored = 0

    def score_labels(self, requests, labels):
        self.scored += len(requests)
        return [self.policy(r.messages[-1].content, labels) for r in requests]


def _first_label(prompt, labels):
    return {label: (0.0 if k == 0 else -3.0) for k, label in enumerate(labels)}


def test_label_judge_uses_likelihood_where_the_backend_scores(tmp_path):
    backend = LabelScorer(_first_label)
    engine = Engine(backend, Store(tmp_path / "s.sqlite"), progress=False)
    judge = LabelJudge(engine)
    assert judge.method == "likelihood" and judge.answer == "letter"
    requests = [ChatRequest.from_prompt(f"q{i}") for i in range(3)]
    out = judge.choose(requests, ["A", "B"], seeds=[0, 1, 2])
    assert [c.best for c in out] == ["A"] * 3 and backend.scored == 3
    # Stored like completions: a rerun reads them back; other labels are another key.
    again = LabelJudge(Engine(backend, Store(tmp_path / "s.sqlite"), progress=False))
    assert [c.probs for c in again.choose(requests, ["A", "B"], [0, 1, 2])] == [
        c.probs for c in out
    ]
    assert backend.scored == 3
    again.choose(requests, ["A", "B", "C"], [0, 1, 2])
    assert backend.scored == 6


def test_label_judge_constrained_path_is_strict():
    backend = ScriptedBackend(script=['{"choice": "B"}', "A great read.", '{"A": 1}'])
    judge = LabelJudge(Engine(backend, None, progress=False))
    assert judge.method == "constrained"
    out = judge.choose([ChatRequest.from_prompt(f"q{i}") for i in range(3)], ["A", "B"], [0, 1, 2])
    assert isinstance(out[0], Choice) and out[0].best == "B"
    assert all(isinstance(r, Reject) for r in out[1:])
    with pytest.raises(GravityError, match="likelihood"):
        LabelJudge(Engine(backend, None, progress=False), method="likelihood")


def _choice(p_a: float) -> Choice:
    return Choice({"A": p_a, "B": 1 - p_a})


def test_quality_verdict_averages_both_orders():
    # a shown first with P(A) = 0.75, then shown second with P(A) = 0.65 (so P(a) = 0.35):
    # a's mean is (0.75 + 0.35) / 2 = 0.55 -> a, though both orders' argmax is position A.
    first, swapped = _choice(0.75), _choice(0.65)
    assert mean_over_orders(first, swapped) == 0.55
    assert QualityJudgeTask.verdict(first, swapped) == "A"
    assert not QualityJudgeTask.position_consistent(first, swapped)
    # b better by the same margin: (0.65 + 0.25) / 2 = 0.45 -> b.
    assert QualityJudgeTask.verdict(_choice(0.65), _choice(0.75)) == "B"
    # One-hot verdicts: agreement decides, a flip is a tie (the FastChat rule).
    assert QualityJudgeTask.verdict(_choice(1.0), _choice(0.0)) == "A"
    assert QualityJudgeTask.position_consistent(_choice(1.0), _choice(0.0))
    assert QualityJudgeTask.verdict(_choice(0.0), _choice(1.0)) == "B"
    assert QualityJudgeTask.verdict(_choice(1.0), _choice(1.0)) is None
    # A pure position preference p is a tie for every p, despite float rounding.
    for p in (0.5, 0.7, 0.71, 0.9, 0.999, 1 / 3):
        assert QualityJudgeTask.verdict(_choice(p), _choice(p)) is None, p
    # An even first answer leaves the decision to the other order.
    assert QualityJudgeTask.verdict(_choice(0.5), _choice(0.4)) == "A"


def _naive_run(tmp_path, example_profiles, backend):
    from gravity.synth import GenerateConfig, synthesize
    from gravity.synth.config import FilterConfig

    cfg = GenerateConfig(
        mode="naive",
        max_items=1,
        facets=["values"],
        filters=FilterConfig(min_words=5, near_duplicate_threshold=None),
    )
    engine = Engine(backend, Store(tmp_path / "s.sqlite"), progress=False)
    return synthesize(example_profiles[:2], cfg, tmp_path / "run", engine=engine, progress=False)


def _text(side) -> str:
    """The assistant text of a chosen/rejected field (a message list or a string)."""
    return side if isinstance(side, str) else side[-1]["content"]


def _shown(prompt: str) -> tuple[str, str]:
    a = prompt.split("Description A:")[1].split("Description B:")[0].strip()
    b = prompt.split("Description B:")[1].split("Which description")[0].strip()
    return a, b


def test_naive_labels_drop_position_bound_verdicts(tmp_path, example_profiles):
    """A quality judge that always picks the first position gives no naive labels: averaged
    over both orders every pair is a tie, dropped and counted in the summary."""
    from tests.fakes import WriterBackend

    class FirstPosition(WriterBackend):
        def score_labels(self, requests, labels):
            return [_first_label("", labels) for _ in requests]

    s = _naive_run(tmp_path, example_profiles, FirstPosition()).summary
    assert s["written"] == 0 and s["rejects_by_reason"] == {"judge_tie": 2}
    assert s["naive_judge"] == {
        "method": "likelihood",
        "pairs": 2,
        "decided": 0,
        "ties": 2,
        "unparsable": 0,
        "position_consistent": 0,
    }


def test_naive_labels_follow_the_signal_under_a_position_bias(tmp_path, example_profiles):
    """A judge whose argmax is always the first position but whose probability still leans to
    the better text (0.75 when it is shown first, 0.65 when the worse one is): every pair is
    decided, for the better text, though no pair is position-consistent."""
    from tests.fakes import WriterBackend

    class BiasedWithSignal(WriterBackend):
        def score_labels(self, requests, labels):
            out = []
            for r in requests:
                a, b = _shown(r.messages[-1].content)
                p = 0.75 if a > b else 0.65  # "better" = sorts last, as WriterBackend's judge
                out.append({"A": math.log(p), "B": math.log(1 - p)})
            return out

    result = _naive_run(tmp_path, example_profiles, BiasedWithSignal())
    s = result.summary
    assert s["written"] == 2 and s["rejected"] == 0
    assert s["naive_judge"]["decided"] == 2 and s["naive_judge"]["position_consistent"] == 0
    lines = (tmp_path / "run" / "pairs.jsonl").read_text().splitlines()
    pairs = [json.loads(line) for line in lines]
    assert len(pairs) == 2
    assert all(_text(p["chosen"]) > _text(p["rejected"]) for p in pairs), pairs


@pytest.fixture(scope="module")
def embedded_backend():
    from gravity.llm import make_backend
    from gravity.llm.config import BackendConfig

    with make_backend(BackendConfig(dtype="float32")) as backend:
        yield backend


def test_embedded_model_scores_labels(embedded_backend):
    """The real default judge: probabilities of single-token labels in one pass, multi-token
    labels by teacher forcing; a padded batch scores each row as it would alone."""
    assert embedded_backend.can_score
    short = ChatRequest.from_prompt(
        "Which is a fruit? [A] apple [B] hammer. Answer with the letter."
    )
    long = ChatRequest.from_prompt("Which is a tool? [A] apple [B] hammer. " * 6 + "Letter only.")
    batch = embedded_backend.score_labels([short, long], ["A", "B"])
    alone = embedded_backend.score_labels([short], ["A", "B"])
    assert batch[0] == pytest.approx(alone[0], abs=1e-3)
    assert all(v < 0 for scores in batch for v in scores.values())
    words = embedded_backend.score_labels([short], ["apple", "hammer"])[0]
    assert words["apple"] > words["hammer"]
