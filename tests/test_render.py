"""Every template renders with every example profile; profile text is data, never code."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from gravity.profiles import FACETS, UserProfile
from gravity.profiles.render import render_profile
from gravity.prompts import environment, render, template_names


def test_every_template_starts_with_a_variables_comment():
    from gravity.resources import prompts_dir

    for name in template_names():
        source = (prompts_dir() / name).read_text()
        assert source.startswith("{#") and "Variables:" in source.split("#}")[0], name


def test_profile_renders_every_facet(example_profiles):
    for profile in example_profiles:
        full = render_profile(profile)
        for marker in (
            "Reader:",
            "Culture (",
            "Values (Schwartz)",
            "Personality (Big Five",
            "Favourite genres",
        ):
            assert marker in full, (profile.id, marker)
        for facet in FACETS:
            part = render_profile(profile, [facet])
            assert part and part in full


def test_facet_selection_excludes_others(example_profiles):
    text = render_profile(example_profiles[0], ["values"])
    assert text.startswith("Values (Schwartz)") and "Personality" not in text
    with pytest.raises(ValueError, match="unknown facet"):
        render_profile(example_profiles[0], ["zodiac"])


def test_jinja_in_profile_data_is_literal(example_profiles):
    base = example_profiles[0].model_dump()
    base["interests"]["favourite_books"] = ["{{ 7*7 }}", "{% for x in range(3) %}x{% endfor %}"]
    base["demographics"]["occupation"] = "{{ ''.__class__.__mro__ }}"
    profile = UserProfile.model_validate(base)
    text = render_profile(profile)
    books = next(line for line in text.splitlines() if line.startswith("Favourite books:"))
    assert books == "Favourite books: {{ 7*7 }}; {% for x in range(3) %}x{% endfor %}."
    assert "{% for x in range(3) %}x{% endfor %}" in text
    assert "{{ ''.__class__.__mro__ }}" in text


def test_environment_is_sandboxed_and_strict():
    env = environment()
    with pytest.raises(SecurityError):
        env.from_string("{{ x.__class__.__mro__ }}").render(x="")
    with pytest.raises(UndefinedError):
        env.from_string("{{ missing }}").render()


def test_unknown_template_lists_available():
    from gravity.errors import GravityError

    with pytest.raises(GravityError, match="profile.j2"):
        render("nope.j2")


def _variables(name: str, profile) -> dict:
    from gravity.books import load_catalog
    from gravity.profiles.render import BOOK_WORDING, render_profile

    book = load_catalog()[0]
    text = render_profile(profile)
    facet_text = render_profile(profile, ["values"])
    return {
        "profile.j2": {
            "profile": profile,
            "facets": ["values"],
            "country_name": "Japan",
            "words": BOOK_WORDING.model_dump(),
        },
        "system.j2": {},
        "describe.j2": {"profile_text": text, "book": book},
        "scenario.j2": {"facet": "values", "facet_text": facet_text, "book": book},
        "chosen.j2": {
            "facet": "values",
            "facet_text": facet_text,
            "scenario": "At a fair.",
            "book": book,
            "min_words": 10,
            "max_words": 90,
        },
        "generic.j2": {"book": book, "min_words": 10, "max_words": 90},
        "judge_quality.j2": {"book": book, "a": "first", "b": "second", "answer": "letter"},
        "judge_persona.j2": {
            "profile_text": text,
            "book": book,
            "candidates": [{"label": "A", "text": "one"}, {"label": "B", "text": "two"}],
            "answer": "json",
        },
        "judge_pair.j2": {
            "profile_text": text,
            "book": book,
            "first": "one",
            "second": "two",
            "answer": "letter",
        },
        "judge_interest.j2": {"profile_text": text, "book": book, "text": "one", "answer": "json"},
        "human_form.html.j2": {
            "reader": profile.id,
            "profile_text": text,
            "cases": [
                {
                    "case_id": "c1",
                    "item_title": book.title,
                    "candidates": [{"label": "A", "text": "one"}],
                }
            ],
            "rows": [],
            "columns": ["case_id"],
        },
        "json_instruction.j2": {"example": '{"genres": ["..."]}'},
        "oracle.j2": {
            "title": book.title,
            "noun": "book",
            "profile": profile,
            "country_name": "Japan",
        },
        "intent_facet.j2": {"intent": "a light read for a holiday"},
        "infer_traits.j2": {"reviews": ["Loved it."], "texts": "book reviews", "person": "reader"},
        "item_intents.j2": {
            "item": {
                "title": book.title,
                "author": None,
                "year": None,
                "publisher": None,
                "description": book.description,
            },
            "reviews": ["Loved it."],
            "neighbours": [{"title": "Emma", "intents": ["a witty romance"]}],
            "max_intents": 4,
        },
        "tag_item.j2": {
            "item": {
                "title": book.title,
                "author": book.author,
                "year": None,
                "publisher": None,
                "description": book.description,
            },
            "noun": "book",
            "tag_name": "genres",
            "tags": ["poetry"],
        },
    }[name]


def test_every_template_renders_with_every_example_profile(example_profiles):
    # The generic task templates (prompts/task/) get a task's variables: test_tasks.py renders
    # them through every built-in task with every example profile.
    names = [n for n in template_names() if not n.startswith("task/")]
    assert len(names) >= 9
    for name in names:
        for profile in example_profiles:
            text = render(name, **_variables(name, profile))
            assert text.strip(), (name, profile.id)


def test_every_template_rejects_missing_variables():
    for name in template_names():
        if name in ("system.j2", "task/system.j2"):
            continue
        with pytest.raises(UndefinedError):
            render(name)


def test_book_text_is_data_in_task_prompts(example_profiles):
    from gravity.books import Book
    from gravity.task import deployed_messages

    book = Book(
        id="b1",
        title="{{ 7*7 }}",
        author="{% raw %}x",
        description="A {{ config }} story about ten words.",
    )
    user = deployed_messages(example_profiles[0], book)[1]["content"]
    assert "Book: {{ 7*7 }} by {% raw %}x." in user and "{{ config }}" in user


def test_hofstede_scores_above_100_show_no_smaller_denominator():
    """Greece's UAI is 112: no score is printed over a scale it exceeds, in any country."""
    import re

    from gravity.profiles import UserProfile, with_country_priors
    from gravity.profiles.culture import countries_with_priors
    from gravity.profiles.render import render_profile

    greece = with_country_priors(UserProfile(id="gr", demographics={"country": "GR"}))
    text = render_profile(greece, ["culture"])
    assert "uncertainty avoidance: very high (112)" in text
    assert "Hofstede index scores, mostly 0-100" in text
    for code in countries_with_priors():
        reader = with_country_priors(UserProfile(id="r", demographics={"country": code}))
        text = render_profile(reader)
        for score, scale in re.findall(r"(\d+(?:\.\d+)?)\s*/\s*(\d+)", text):
            assert float(score) <= float(scale), (code, score, scale)
