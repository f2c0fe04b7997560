"""JSON-schema constrained decoding for the ``transformers`` backend, and example objects.

- ``JsonConstraint``: a transformers logits processor that lets each row of a batch emit only
  tokens that keep its output a prefix of a JSON document valid for the request's schema, then
  EOS. Built on llguidance (a grammar engine that vLLM and SGLang also use for their JSON
  modes): a 3 MB wheel with no dependencies, a mask in tens of microseconds per token. It runs
  before the row sampler, so a row still draws from its own random stream, among allowed tokens.
- ``json_example``: an example object for a schema, shown to models instead of the raw schema
  (a small model given a schema tends to echo it back).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from gravity.errors import GravityError, printable

# Compact, predictable JSON: no free whitespace (a small model can otherwise loop on newlines
# until its token limit), the usual separators.
_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError:
        raise GravityError(
            "JSON-constrained decoding on transformers needs llguidance, a dependency of "
            "gravity: pip install 'llguidance>=1.9,<2'"
        ) from None
    return llguidance


_SCHEMA_MAPS = {"properties", "$defs", "definitions", "patternProperties"}
_LEFT_OPEN = {"const", "enum", "default", "examples", "allOf"}


@lru_cache(maxsize=64)
def _grammar(schema_json: str) -> str:
    llg = _llguidance()
    closed = json.dumps(closed_schema(json.loads(schema_json)))
    return llg.LLMatcher.grammar_from_json_schema(closed, overrides=_JSON_OPTIONS)


def closed_schema(node: Any) -> Any:
    """``node`` with ``additionalProperties: false`` on every object that does not say: JSON
    Schema allows unnamed keys by default, and a grammar that allows them lets a model write
    any key with any text in place of the fields asked for."""
    if isinstance(node, list):
        return [closed_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        # A mapping of names to schemas is not a schema itself: close each of its schemas.
        # Values (const, enum, default, examples) are data, and the branches of allOf are
        # parts of one object (closing each would forbid the others' keys): left as they are.
        k: {n: closed_schema(v) for n, v in value.items()}
        if k in _SCHEMA_MAPS and isinstance(value, dict)
        else value
        if k in _LEFT_OPEN
        else closed_schema(value)
        for k, value in node.items()
    }
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


class JsonConstraint:
    """Masks each row's scores to the tokens its JSON schema allows next.

    ``tokenizer`` is an ``llguidance.LLTokenizer`` (see ``llg_tokenizer``); ``schema`` one JSON
    schema for every row. The decoding step is read from the sequence length, so the processor
    knows which token each row chose last and feeds it to that row's matcher. A row whose
    matcher has failed or stopped is left unmasked: its output is cut at EOS by the backend.
    """

    def __init__(
        self,
        tokenizer: Any,
        schema: dict[str, Any],
        rows: int,
        prompt_len: int,
        eos_ids: tuple[int, ...] = (),
    ) -> None:
        llg = _llguidance()
        grammar = _grammar(json.dumps(schema))
        self.matchers = [llg.LLMatcher(tokenizer, grammar, log_level=0) for _ in range(rows)]
        error = self.matchers[0].get_error() if self.matchers else ""
        if error:
            raise GravityError(f"JSON schema cannot be compiled to a grammar: {printable(error)}")
        self.prompt_len = prompt_len
        self.eos = sorted({tokenizer.eos_token, *eos_ids})
        self.done = [False] * rows

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        step = input_ids.shape[1] - self.prompt_len
        vocab = scores.shape[-1]
        for row, matcher in enumerate(self.matchers):
            if self.done[row]:
                continue
            if step > 0 and not matcher.consume_token(int(input_ids[row, -1])):
                self.done[row] = True  # an error state: leave the row alone from here
                continue
            if matcher.is_stopped():
                # The document is complete: only EOS may follow.
                allowed = torch.zeros(vocab, dtype=torch.bool, device=scores.device)
                allowed[[e for e in self.eos if e < vocab]] = True
                self.done[row] = True
            else:
                bias = matcher.compute_logit_bias()
                allowed = torch.frombuffer(bytearray(bias), dtype=torch.uint8)[:vocab] > 0
                allowed = _fit(allowed, vocab).to(scores.device)
            if bool(allowed.any()):
                scores[row] = scores[row].masked_fill(~allowed, float("-inf"))
        return scores


def _fit(mask: Any, vocab: int) -> Any:
    """``mask`` padded with False (or cut) to the model's vocabulary size (embedding matrices
    are often padded past the tokenizer's size)."""
    import torch

    if mask.shape[0] >= vocab:
        return mask[:vocab]
    return torch.cat([mask, torch.zeros(vocab - mask.shape[0], dtype=torch.bool)])


def llg_tokenizer(hf_tokenizer: Any) -> Any:
    """The llguidance view of a fast transformers tokenizer (about a second: cache it)."""
    import llguidance.hf

    _llguidance()
    return llguidance.hf.from_tokenizer(hf_tokenizer)


def json_example(schema: dict[str, Any]) -> Any:
    """An example value for ``schema``: its ``examples`` when it has some, else built from its
    properties (enums give their first value, numbers their lower bound, arrays one item)."""
    return _example(schema, schema.get("$defs", {}))


def _example(node: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    if depth > 8:  # a recursive schema: stop with a placeholder
        return None
    if node.get("examples"):
        return node["examples"][0]
    if "$ref" in node:
        return _example(defs.get(node["$ref"].rsplit("/", 1)[-1], {}), defs, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if node.get(key):
            options = [o for o in node[key] if o.get("type") != "null"] or node[key]
            return _example(options[0], defs, depth + 1)
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][0]
    kind = node.get("type", "object")
    if kind == "object":
        props = node.get("properties", {})
        return {name: _example(sub, defs, depth + 1) for name, sub in props.items()}
    if kind == "array":
        items = node.get("items", {})
        return [_example(items, defs, depth + 1)] * max(1, node.get("minItems", 1))
    if kind in ("number", "integer"):
        low = node.get("minimum", node.get("exclusiveMinimum", 0))
        high = node.get("maximum", node.get("exclusiveMaximum", low))
        middle = (low + high) / 2
        return int(middle) if kind == "integer" else round(middle, 1)
    if kind == "boolean":
        return True
    return "..."
