"""parse_spec in-process on thousands of generated payloads: it returns a spec or raises
PayloadError naming the field, never anything else (no TypeError, OverflowError, RecursionError...).

Examples are derandomized and the database is off, so every run checks the same payloads; a
failure shrinks to a small payload. Counts: 400 examples x 13 payloads (12 broken specs + one
arbitrary JSON value) = 5200, 300 x 10 = 3000 broken specs checked for the field they name, 300
valid specs. Payloads come in batches because Hypothesis slows down past a few hundred examples.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings

from tests.scale.payloads import any_payloads, invalid_batch, names_field, valid_spec
from worker.errors import PayloadError
from worker.render import parse_spec

FIXED = dict(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))


def via_jsonb(payload):
    """What the worker gets back from the jobs table (json text round trip)."""
    return json.loads(json.dumps(payload))


@settings(max_examples=400, **FIXED)
@given(any_payloads(12))
def test_parse_spec_returns_a_spec_or_raises_payload_error(payloads):
    for payload in payloads:
        for p in (payload, via_jsonb(payload)):
            try:
                parse_spec(p)
            except PayloadError as exc:
                assert str(exc).startswith("invalid payload: ") and exc.field and exc.rule, str(exc)


@settings(max_examples=300, **FIXED)
@given(invalid_batch(10))
def test_every_broken_field_is_named_in_the_error(bads):
    for bad in bads:
        try:
            parse_spec(via_jsonb(bad.payload))
        except PayloadError as exc:
            assert names_field(str(exc), bad), f"{bad.kind}: expected {bad.field!r}, got {exc}"
        else:
            raise AssertionError(f"{bad.kind}: accepted a payload broken at {bad.field}: {bad.payload}")


@settings(max_examples=300, **FIXED)
@given(valid_spec(speech=True))
def test_generated_valid_specs_parse(spec):
    parsed = parse_spec(via_jsonb(spec))
    assert len(parsed.layers) == len(spec["layers"])
