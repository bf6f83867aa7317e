"""app.json's ``env`` block, generated from the settings classes, so Heroku's deploy form lists
every variable the worker reads, with its description, whether it must be set, and its default.

``python -m worker.commands.heroku`` rewrites app.json's env block (a test fails when it is stale).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from worker.commands.settings import env_name, settings_classes

APP_JSON = Path(__file__).resolve().parents[2] / "app.json"

# Optional for the settings classes, but a deployed worker runs the pipeline, which cannot start
# without storage: SUPABASE_URL (public URLs and the S3 endpoint) and the S3 access key pair.
REQUIRED_ON_HEROKU = frozenset({"SUPABASE_URL", "STORAGE_S3_ACCESS_KEY_ID", "STORAGE_S3_SECRET_ACCESS_KEY"})
_SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")
# Set by Heroku itself (web dynos only): never listed for the operator to fill in.
HEROKU_MANAGED = frozenset({"PORT"})


def is_secret(name: str, field: FieldInfo) -> bool:
    """Keys, secrets, passwords and every SecretStr (database URLs carry a password)."""
    return "SecretStr" in str(field.annotation) or any(w in name for w in _SECRET_WORDS)


def _value(field: FieldInfo) -> str | None:
    """The default as Heroku wants it (a string), or None when there is none to show."""
    if field.default_factory is not None or field.default is PydanticUndefined:
        return None
    d = field.default
    if d is None or isinstance(d, SecretStr) or d == "":
        return None
    if isinstance(d, bool):
        return "true" if d else "false"
    if isinstance(d, float) and d.is_integer():
        d = int(d)
    return str(d)


def app_json_env() -> dict[str, dict[str, Any]]:
    """``{NAME: {"description", "required", ["value"]}}`` for every setting, in README order.

    ``required`` is always explicit (Heroku treats a missing ``required`` as true). Secrets never
    get a value.
    """
    env: dict[str, dict[str, Any]] = {}
    for _, cls in settings_classes():
        for name, field in cls.model_fields.items():
            var = env_name(name, field, cls)
            if var in HEROKU_MANAGED:
                continue
            entry: dict[str, Any] = {
                "description": (field.description or "").replace("\n", " ").strip(),
                "required": field.is_required() or var in REQUIRED_ON_HEROKU,
            }
            value = None if is_secret(var, field) else _value(field)
            if value is not None:
                entry["value"] = value
            env[var] = entry
    return env


def update_app_json(path: Path = APP_JSON) -> bool:
    """Rewrite app.json's env block from the settings; True when it changed."""
    text = path.read_text()
    manifest = json.loads(text)
    manifest["env"] = app_json_env()
    new = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    path.write_text(new)
    return new != text


if __name__ == "__main__":
    print("app.json updated" if update_app_json() else "app.json already up to date")
    sys.exit(0)
