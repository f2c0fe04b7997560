"""The evaluation's controls: a writer built to personalize and one that cannot, judges built to
see the reader and to see only position, hand-computed summaries, a negative control built to
fail, and the report's and recompute's use of them."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from gravity.evaluate.config import EvalConfig, SystemSpec
from gravity.evaluate.controls import oracle_text, partners, summarize
from gravity.evaluate.intervals import BootstrapSettings
from gravity.evaluate.runner import Case
from gravity.llm.base import Completion
from tests.fakes import WORDS, ScriptedBackend

COUNTRIES = ["US", "BR", "JP", "IN"]


def _readers(per_country: int = 3):
    from gravity.profiles import sample_profiles

    return [r for i, c in enumerate(COUNTRIES) for r in sample_profiles(c, per_country, seed=i)]


def _profile_phrase(text: str) -> str | None:
    """What a profile says its reader cares most about and where they are from (None: no
    profile in the text)."""
    if "cares most about" not in text or " from " not in text:
        return None
    cares = text.split("cares most about ", 1)[1].split(";", 1)[0]
    country = text.split(" from ", 1)[1].split(",", 1)[0].split(".", 1)[0]
    return f"for someone from {country} who cares about {cares}"


class _Fake(ScriptedBackend):
    """Writes and judges. Writing: a description built from the profile in its prompt (when
    ``personal``), plus a word chosen by the sampling seed. Judging (label scores): ``policy``."""

    def __init__(self, policy: str = "reader", personal: bool = True) -> None:
        super().__init__(constrains_json=False)
        self.policy, self.personal = policy, personal

    def generate(self, requests, params, seeds=None):
        out = []
        for request, seed in zip(requests, seeds or [params.seed] * len(requests)):
            prompt = "\n".join(m.content for m in request.messages)
            word = WORDS[int(hashlib.sha256(str(seed).encode()).hexdigest(), 16) % len(WORDS)]
            phrase = _profile_phrase(prompt) if self.personal else None
            text = f"A {word} story" + (f" {phrase}" if phrase else " about this book") + "."
            self.seen.append(request)
            out.append(Completion(text=text, prompt_tokens=1, completion_tokens=len(text.split())))
        return out

    def score_labels(self, requests, labels):
        return [self._score(r.messages[-1].content, labels) for r in requests]

    def _score(self, prompt: str, labels):
        if labels[0] == "1":  # an interest rating: no opinion
            return {k: 0.0 for k in labels}
        if self.policy == "position":
            return {k: (0.0 if k == "A" else -4.0) for k in labels}
        persona = prompt.split("Imagine you are this reader:", 1)[1].split("[A]", 1)[0]
        country = persona.split(" from ", 1)[1].split(",", 1)[0].split(".", 1)[0]
        texts = {k: prompt.split(f"[{k}]\n", 1)[1].split("\n\n", 1)[0] for k in labels}
        return {k: (0.0 if country in texts[k] else -4.0) for k in labels}


def _catalog(tmp_path):
    from gravity.books import load_catalog

    items = load_catalog()[:6]
    path = tmp_path / "catalog.jsonl"
    path.write_text("".join(json.dumps(i.model_dump(mode="json")) + "\n" for i in items))
    return path


def _evaluate(tmp_path, monkeypatch, backend, controls="all", name="eval"):
    import gravity.evaluate.runner as runner

    monkeypatch.setattr(runner, "make_backend", lambda config: backend)
    cfg = EvalConfig(
        systems=[SystemSpec(name="base", kind="base"), SystemSpec(name="prompt", kind="prompt")],
        focus="prompt",
        catalog=_catalog(tmp_path),
        items_per_reader=1,
        bootstrap=200,
        min_readers=2,
        controls=controls,
    )
    out = tmp_path / name
    return runner.evaluate(_readers(), cfg, out, progress=False), out


def test_partners_are_other_readers_preferring_the_same_item():
    from gravity.books import load_catalog

    readers = _readers(2)
    items = load_catalog()[:3]
    cases = [Case(r, items[k % 3]) for k, r in enumerate(readers)]
    chosen = partners(cases, seed=0)
    by_item = {}
    for c in cases:
        by_item.setdefault(c.book.id, set()).add(c.reader.id)
    for c in cases:
        p = chosen[c.id]
        assert p.id != c.reader.id
        if len(by_item[c.book.id]) > 1:  # someone else has this item: their text is reused
            assert p.id in by_item[c.book.id]
    assert chosen == partners(cases, seed=0)
    assert {c.id: p.id for c, p in zip(cases, chosen.values())} != {
        c.id: p.id for c, p in zip(cases, partners(cases, seed=1).values())
    } or len(cases) < 4
    assert partners([Case(readers[0], items[0])], seed=0) == {}


def test_oracle_text_is_literal_and_differs_by_reader():
    reader = _readers(1)[0]
    liked = reader.interests.model_copy(update={"genres": ["{{ 7*7 }}"]})
    hostile = reader.model_copy(update={"interests": liked})
    text = oracle_text(hostile, "{% raw %}Title", "book")
    assert "{{ 7*7 }}" in text and "{% raw %}Title" in text and "49" not in text
    other = _readers(1)[1]
    assert oracle_text(reader, "T", "book") != oracle_text(other, "T", "book")


def _row(reader, item, matched, judge=None, negative=0.0, oracle=0.3):
    controls = {
        "system": "gravity",
        "mode": "all" if judge is not None else "alignment",
        "mismatched": {"base": "x", "gravity": "y"},
        "alignment": {
            "matched:base": 0.0,
            "matched:gravity": matched,
            "oracle": oracle,
            "negative": negative,
        },
    }
    if judge is not None:
        controls["judge"] = {"matched": judge, "oracle": 0.9, "negative": 0.5}
    return {
        "case_id": f"{reader}:{item}",
        "reader_id": reader,
        "item_id": item,
        **{"controls": controls},
    }


SETTINGS = BootstrapSettings(resamples=200, min_readers=2)


def test_summary_matches_a_hand_computed_t_interval():
    values, judged = [0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 1.0]
    rows = [_row(f"r{k}", f"i{k}", v, j) for k, (v, j) in enumerate(zip(values, judged))]
    s = summarize(rows, SETTINGS)
    half = 3.182446305284263 * (math.sqrt(sum((v - 0.25) ** 2 for v in values) / 3) / 2)
    est = s["matched"]["gravity"]
    assert est["value"] == pytest.approx(0.25)
    assert est["ci"] == pytest.approx([0.25 - half, 0.25 + half])
    assert s["alignment_sees_reader"] is True
    j = s["matched_judge"]  # P(own) 0.85; its interval cut at 1
    assert j["value"] == pytest.approx(0.85)
    assert j["ci"] == pytest.approx([0.85 - half, 1.0]) and j["clipped"] is True
    assert s["judge_validated"] is True
    assert s["negative_held"] is True  # negative controls all 0 / 0.5: constant, at the null
    assert s["matched"]["base"]["value"] == 0.0


def test_a_judge_at_chance_is_not_validated_and_a_shifted_negative_control_fails():
    judged = [0.6, 0.4, 0.55, 0.45]
    negatives = [0.05, 0.06, 0.05, 0.07]  # the second seed systematically worse: planted
    rows = [
        _row(f"r{k}", f"i{k}", 0.0, j, negative=n)
        for k, (j, n) in enumerate(zip(judged, negatives))
    ]
    s = summarize(rows, SETTINGS)
    assert s["judge_validated"] is False and s["alignment_sees_reader"] is False
    assert s["negative_held"] is False
    from gravity.evaluate.control_report import control_lines

    text = "\n".join(control_lines({"controls": s}))
    assert "The judge is not validated" in text and "an interval excludes its null" in text
    assert "alignment cannot tell" in text


def test_identical_seeds_say_the_negative_control_cannot_fail():
    from gravity.evaluate.control_report import control_lines

    rows = [_row(f"r{k}", f"i{k}", 0.1 * k) for k in range(4)]  # alignment only, negatives 0
    s = summarize(rows, SETTINGS)
    assert s["judge_validated"] is None and "matched_judge" not in s
    text = "\n".join(control_lines({"controls": s}))
    assert "identical texts (greedy decoding)" in text
    assert "not checked by a positive control (`controls: alignment`)" in text


def test_no_controls_is_said():
    from gravity.evaluate.control_report import control_lines, control_table

    assert summarize([{"case_id": "a", "reader_id": "r"}], SETTINGS) is None
    assert "No controls were run" in control_lines({"controls": None})[0]
    assert "No controls were run" in control_table({"controls": None})[0]


def test_a_personalizing_writer_passes_and_a_reader_blind_judge_fails(tmp_path, monkeypatch):
    """End to end through `evaluate`: 12 readers of 4 countries, 6 items. The writer puts the
    reader's values and country in a profile-prompted text: alignment tells own from other for
    `prompt`, not for `base` (which sees no profile). A judge that looks for the reader's country
    is validated; a judge that always picks position A is not, and the report says its verdicts
    are not evidence. The negative control (seeded words only) holds."""
    from gravity.evaluate.recompute import recompute

    metrics, out = _evaluate(tmp_path, monkeypatch, _Fake("reader"))
    c = metrics["controls"]
    assert c["system"] == "prompt" and c["mode"] == "all"
    assert c["matched"]["prompt"]["ci"][0] > 0 and c["alignment_sees_reader"] is True
    lo, hi = c["matched"]["base"]["ci"]
    assert lo <= 0 <= hi
    assert c["oracle"]["alignment"]["ci"][0] > 0
    assert c["judge_validated"] is True and c["matched_judge"]["value"] > 0.9
    assert c["negative_held"] is True
    assert c["judge_calls"]["calls"] > 0
    rows = [json.loads(x) for x in (out / "cases.jsonl").read_text().splitlines()]
    assert all(r["controls"]["partner"] != r["reader_id"] for r in rows)
    report = (out / "report.md").read_text()
    assert "## Controls" in report and "## Power" in report
    assert "its verdicts below count as evidence" in report
    assert "smallest effect detectable at 12 readers" in report
    assert metrics["power"] and all(r["readers"] == 12 for r in metrics["power"])
    written = json.loads((out / "metrics.json").read_text())
    again = recompute(out)  # from the stored cases, no model
    assert again["controls"] == written["controls"] and again["power"] == written["power"]
    assert again["task"] == written["task"]

    blind, out2 = _evaluate(tmp_path, monkeypatch, _Fake("position"), name="blind")
    assert blind["controls"]["judge_validated"] is False
    assert blind["controls"]["matched_judge"]["value"] == pytest.approx(0.5)
    report = (out2 / "report.md").read_text()
    assert "The judge is not validated" in report
    assert "(judge not validated: not evidence)" in report


def test_a_writer_that_ignores_the_reader_fails_the_positive_control(tmp_path, monkeypatch):
    metrics, out = _evaluate(tmp_path, monkeypatch, _Fake("reader", personal=False))
    c = metrics["controls"]
    lo, hi = c["matched"]["prompt"]["ci"]
    assert lo <= 0 <= hi and c["alignment_sees_reader"] is False
    assert c["judge_validated"] is False  # no text names a country: every pair ties
    # the judge itself can see the reader (the oracle texts name the country): the report says
    # the system may be what does not personalize
    assert c["oracle"]["judge"]["ci"][0] > 0.5
    assert "It does tell the oracle texts apart" in (out / "report.md").read_text()


def test_the_control_system_sees_a_profile():
    from gravity.evaluate.controls import control_system

    systems = [("base", "base"), ("prompt", "prompt"), ("gravity", "model")]
    assert control_system(systems, "gravity") == "gravity"
    assert control_system(systems, "base") == "gravity"  # base's texts differ only by seed
    assert control_system(systems, "missing") == "gravity"
    assert control_system([("base", "base"), ("b2", "base")], "base") == "base"
    assert control_system([("base", "base"), ("b2", "base")], "x") == "b2"


def test_controls_off_makes_no_extra_calls(tmp_path, monkeypatch):
    off_backend, all_backend = _Fake(), _Fake()
    off, out = _evaluate(tmp_path, monkeypatch, off_backend, controls="off", name="off")
    assert off["controls"] is None
    assert "No controls were run" in (out / "report.md").read_text()
    _evaluate(tmp_path, monkeypatch, all_backend, controls="all", name="all")
    # 12 cases x 2 systems described, 1 pair x 2 orders and 2 interest ratings per case
    assert len(off_backend.seen) == 12 * 2
    # with controls: 12 more descriptions under the other seed (partners' texts are reused
    # where the partner has the item; otherwise one more per system)
    assert len(all_backend.seen) >= 12 * 3
