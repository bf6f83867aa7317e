"""The README's configuration tables, generated from the settings classes themselves.

``python -m worker settings`` prints them; ``--update-readme`` rewrites the block between the
``<!-- settings:start -->`` and ``<!-- settings:end -->`` markers, and the providers table between
``<!-- providers:start -->`` and ``<!-- providers:end -->`` (from the provider registry). A test
fails when the README and the code disagree, so every variable, default and range in the README is
the one enforced.
"""

from __future__ import annotations

import argparse
import typing
from importlib import import_module
from pathlib import Path

import annotated_types as at
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from worker.providers import registry

README = Path(__file__).resolve().parents[2] / "README.md"

# (section title, "module:Class"), in README order.
SECTIONS: list[tuple[str, str]] = [
    ("Queue and worker", "worker.config:WorkerSettings"),
    ("Render engine", "worker.render.settings:RenderSettings"),
    ("Providers (speech and music)", "worker.providers.settings:ProviderSettings"),
    ("Storage (Supabase Storage over S3)", "worker.storage.settings:StorageSettings"),
    ("Dashboard and autoscaling", "worker.web.settings:DashboardSettings"),
]


def settings_classes() -> list[tuple[str, type[BaseSettings]]]:
    out = []
    for title, ref in SECTIONS:
        module, _, name = ref.partition(":")
        out.append((title, getattr(import_module(module), name)))
    return out


def env_name(name: str, field: FieldInfo, cls: type[BaseSettings]) -> str:
    alias = field.validation_alias or field.alias
    if isinstance(alias, str):
        return alias.upper()
    return (str(cls.model_config.get("env_prefix") or "") + name).upper()


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "computed"
    d = field.default
    if d is PydanticUndefined:
        return "required"
    if d is None or (isinstance(d, SecretStr) and not d.get_secret_value()) or d == "":
        return "unset"
    if isinstance(d, bool):
        return "true" if d else "false"
    if isinstance(d, float) and d.is_integer():
        d = int(d)
    return f"`{d}`"


def _range(field: FieldInfo) -> str:
    parts: list[str] = []
    lo = hi = None
    for m in field.metadata:
        if isinstance(m, at.Ge):
            lo = f">= {m.ge:g}" if isinstance(m.ge, float) else f">= {m.ge}"
        elif isinstance(m, at.Gt):
            lo = f"> {m.gt}"
        elif isinstance(m, at.Le):
            hi = f"{m.le:g}" if isinstance(m.le, float) else str(m.le)
        elif isinstance(m, at.Lt):
            hi = f"< {m.lt}"
    if lo and hi and lo.startswith(">=") and not hi.startswith("<"):
        parts.append(f"{lo[3:]}-{hi}")
    else:
        parts += [p if p != hi or hi.startswith("<") else f"<= {p}" for p in (lo, hi) if p]
    args = [a for a in typing.get_args(field.annotation) if a is not type(None)]
    literal = (
        field.annotation
        if typing.get_origin(field.annotation) is typing.Literal
        else next((a for a in args if typing.get_origin(a) is typing.Literal), None)
    )
    choices: tuple[object, ...] = typing.get_args(literal) if literal is not None else ()
    if not choices and isinstance(field.json_schema_extra, dict):
        enum = field.json_schema_extra.get("enum")
        choices = tuple(enum) if isinstance(enum, list) else ()
    if choices:
        parts.append(" \\| ".join(str(v) for v in choices))
    return ", ".join(parts)


def markdown() -> str:
    blocks = []
    for title, cls in settings_classes():
        rows = [f"#### {title}", "", "| Variable | Default | Range | What it does |", "|---|---|---|---|"]
        for name, field in cls.model_fields.items():
            desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            rows.append(f"| `{env_name(name, field, cls)}` | {_default(field)} | {_range(field)} | {desc} |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def generated_blocks() -> dict[str, str]:
    """Each generated README block by marker name."""
    return {"settings": markdown(), "providers": registry.docs_table()}


def readme_block(text: str, name: str = "settings") -> str:
    start_mark, end_mark = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    start, end = text.index(start_mark) + len(start_mark), text.index(end_mark)
    return text[start:end].strip()


def update_readme(path: Path = README) -> bool:
    text = new = path.read_text()
    for name, block in generated_blocks().items():
        head, tail = new.split(f"<!-- {name}:start -->", 1)
        new = f"{head}<!-- {name}:start -->\n{block}\n<!-- {name}:end -->{tail.split(f'<!-- {name}:end -->', 1)[1]}"
    path.write_text(new)
    return new != text


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m worker settings",
        description="Print every setting (environment variable, default, range) as markdown tables.",
    )
    ap.add_argument("--update-readme", action="store_true", help="rewrite the README's configuration block")
    args = ap.parse_args(argv)
    if args.update_readme:
        print("README.md updated" if update_readme() else "README.md already up to date")
    else:
        print(markdown())
    return 0
