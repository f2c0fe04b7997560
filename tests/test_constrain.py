"""JSON-schema constraints for the transformers backend: the schema a grammar is built from, the
example object a model is shown, and the constraint itself on a real (tiny, random) model."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from gravity.llm import BackendConfig, ChatRequest, SamplingParams, make_backend
from gravity.llm.constrain import closed_schema, json_example


class Inner(BaseModel):
    name: str
    score: float = Field(ge=1, le=5)


class Outer(BaseModel):
    kind: Literal["a", "b"]
    properties: list[str] = Field(min_length=2)  # a field that shares a JSON Schema keyword
    inner: Inner
    note: str | None = None
    count: int = Field(ge=0, le=10)


def test_closed_schema_closes_every_object_and_only_objects():
    schema = closed_schema(Outer.model_json_schema())
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Inner"]["additionalProperties"] is False
    # The mapping of field names is not a schema: no key is added to it.
    assert set(schema["properties"]) == {"kind", "properties", "inner", "note", "count"}
    assert "additionalProperties" not in schema["properties"]["properties"]
    open_ = closed_schema({"type": "object", "properties": {}, "additionalProperties": True})
    assert open_["additionalProperties"] is True  # a schema that says so stays open


def test_json_example_is_built_from_the_schema_by_hand():
    example = json_example(Outer.model_json_schema())
    assert example == {
        "kind": "a",
        "properties": ["...", "..."],
        "inner": {"name": "...", "score": 3.0},
        "note": "...",
        "count": 5,
    }
    Outer.model_validate(example)  # an example of the schema, not only of its shape
    assert json_example({"type": "object", "examples": [{"x": 1}]}) == {"x": 1}


class Tags(BaseModel):
    genres: list[Literal["fantasy", "history", "poetry"]] = Field(min_length=1, max_length=3)
    mood: str = Field(max_length=24)
    stars: int = Field(ge=1, le=5)


@pytest.fixture(scope="module")
def tiny_backend(tiny_model):
    with make_backend(BackendConfig(model=str(tiny_model))) as backend:
        yield backend


def _requests(n: int) -> list[ChatRequest]:
    return [ChatRequest.from_prompt(f"Tag book number {i}.") for i in range(n)]


def test_a_random_model_writes_schema_valid_json_under_the_constraint(tiny_backend):
    """A random model writes noise; under the grammar every answer is a valid object. The
    control (same requests, same seeds, no schema) is not."""
    schema = Tags.model_json_schema()
    params = SamplingParams(max_new_tokens=120, temperature=1.0, seed=3, json_schema=schema)
    outs = tiny_backend.generate(_requests(6), params, seeds=list(range(6)))
    for out in outs:
        assert out.finish_reason == "stop", out.text
        Tags.model_validate(json.loads(out.text))
    free = tiny_backend.generate(
        _requests(6), params.model_copy(update={"json_schema": None}), seeds=list(range(6))
    )
    assert not any(_valid(o.text) for o in free)


def test_constrained_rows_keep_their_own_seeds(tiny_backend):
    schema = Tags.model_json_schema()
    params = SamplingParams(max_new_tokens=120, temperature=1.0, json_schema=schema)
    batch = tiny_backend.generate(_requests(4), params, seeds=[7, 8, 9, 10])
    alone = [
        tiny_backend.generate([r], params, seeds=[s])[0]
        for r, s in zip(_requests(4), [7, 8, 9, 10])
    ]
    assert [o.text for o in batch] == [o.text for o in alone]
    other = tiny_backend.generate(_requests(4), params, seeds=[17, 18, 19, 20])
    assert [o.text for o in other] != [o.text for o in batch]


def test_greedy_constrained_decoding(tiny_backend):
    schema = Tags.model_json_schema()
    params = SamplingParams(max_new_tokens=120, temperature=0.0, json_schema=schema)
    a = tiny_backend.generate(_requests(2), params)
    b = tiny_backend.generate(_requests(2), params)
    assert [o.text for o in a] == [o.text for o in b]
    assert all(_valid(o.text) for o in a)


def _valid(text: str) -> bool:
    try:
        Tags.model_validate(json.loads(text))
    except ValueError:
        return False
    return True


def test_closed_schema_leaves_data_and_allof_branches_alone():
    both = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    }
    assert closed_schema(both) == both  # closing each branch would forbid the other's key
    const = {"const": {"properties": {"x": 1}}}
    assert closed_schema(const) == const  # a value, not a schema


def test_an_allof_schema_constrains_and_a_bad_schema_is_one_line(tiny_backend):
    from gravity.errors import GravityError

    both = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    }
    params = SamplingParams(max_new_tokens=60, temperature=0.0, json_schema=both)
    (out,) = tiny_backend.generate(_requests(1), params)  # compiles (no key is forbidden)
    assert out.text.startswith('{"')
    bad = {"type": "string", "pattern": "(?<=a)b"}  # look-behind: no grammar for it
    with pytest.raises(GravityError, match="cannot be compiled") as err:
        tiny_backend.generate(_requests(1), params.model_copy(update={"json_schema": bad}))
    assert "\n" not in str(err.value)


def test_json_example_of_a_recursive_schema_ends():
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node",
    }
    example = json_example(schema)
    depth = 0
    while isinstance(example, dict):
        example, depth = example["child"], depth + 1
    assert 1 <= depth <= 9
