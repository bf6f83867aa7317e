"""Turn a job payload into a :class:`RenderSpec`, or a :class:`PayloadError` naming field and rule."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from worker.errors import PayloadError
from worker.render.settings import RenderSettings
from worker.render.spec import LAYER_TYPES, SPEC_VERSION, LegacyJob, RenderSpec, legacy_to_spec

M = TypeVar("M", bound=BaseModel)

# A model-level rule is raised as ValueError("<field>: <rule>") so the field can be named.
_FIELD_RULE = re.compile(
    r"^(?P<field>[A-Za-z_][\w]*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*): (?P<rule>.+)$"
)


def parse_spec(payload: Any, settings: RenderSettings | None = None) -> RenderSpec:
    """Validate a job payload (``spec_version`` 1, or the legacy ``{prompt, duration, quality,
    mode}`` shape) into a :class:`RenderSpec`.

    Raises :class:`PayloadError` whose ``field`` is a path such as ``layers[2].beat_hz``.
    """
    settings = settings or RenderSettings()
    if not isinstance(payload, dict):
        raise PayloadError("payload", "must be a JSON object")
    if "spec_version" not in payload:
        if "prompt" in payload:
            legacy = _validate(LegacyJob, payload, {})
            payload = legacy_to_spec(legacy)
        else:
            raise PayloadError("spec_version", f"required (supported: {SPEC_VERSION})")
    elif payload["spec_version"] != SPEC_VERSION or isinstance(payload["spec_version"], bool):
        raise PayloadError("spec_version", f"unsupported version (supported: {SPEC_VERSION})")
    ctx = {"max_duration_s": settings.max_duration_s, "max_layers": settings.max_layers}
    spec: RenderSpec = _validate(RenderSpec, payload, ctx)
    return spec


def _validate(model: type[M], payload: dict[str, Any], ctx: dict[str, Any]) -> M:
    try:
        return model.model_validate(payload, context=ctx)
    except ValidationError as exc:
        raise _to_payload_error(exc) from None


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    skip_tag = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            skip_tag = True  # a discriminated union puts the tag after the index
            continue
        if skip_tag and part in LAYER_TYPES:
            skip_tag = False
            continue
        skip_tag = False
        if str(part).startswith(("function-", "constrained-", "list[", "literal[")):  # union member labels
            continue
        out += f".{part}" if out else str(part)
    return out or "payload"


def _to_payload_error(exc: ValidationError) -> PayloadError:
    err = exc.errors(include_url=False, include_input=False)[0]
    kind = err["type"]
    field = _path(tuple(err["loc"]))
    msg = str(err["msg"])
    if kind == "union_tag_invalid":
        return PayloadError(
            f"{field}.type", f"unknown layer type (expected one of: {', '.join(LAYER_TYPES)})"
        )
    if kind == "union_tag_not_found":
        return PayloadError(f"{field}.type", f"required (one of: {', '.join(LAYER_TYPES)})")
    if kind == "missing":
        return PayloadError(field, "required")
    if kind == "extra_forbidden":
        return PayloadError(field, "unknown field")
    if kind == "string_pattern_mismatch":
        return PayloadError(field, "must be a short name of letters, digits and _ . : @ + - (or a safe path)")
    if kind == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        return PayloadError(field, f"must be one of {expected}")
    msg = msg.removeprefix("Value error, ")
    m = _FIELD_RULE.match(msg)
    if m and kind == "value_error" and not msg.startswith("must "):
        sub = m.group("field")
        field = f"{field}.{sub}" if field != "payload" else sub
        if sub.startswith("layers["):  # rule raised at the top level naming a layer
            field = sub
        msg = m.group("rule")
    return PayloadError(field, msg[:1].lower() + msg[1:])
