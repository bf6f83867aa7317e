"""``python -m worker <command>``: the one entry point for operators.

Each command lives in the module that owns its subject; this file only dispatches, importing a
command's module when it runs so ``python -m worker render`` never needs a database driver and
``python -m worker run`` never loads the render engine before it needs it.
"""

from __future__ import annotations

import sys
from importlib import import_module

# command -> (module, one-line help). Each module exposes ``main(argv: list[str]) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("worker.commands.run", "claim and process jobs until SIGTERM"),
    "migrate": (
        "worker.commands.migrate",
        "check this ffmpeg can render, then apply pending migrations (--skip-tool-check: no ffmpeg here)",
    ),
    "render": ("worker.commands.render", "render a spec file locally (no database, no storage)"),
    "settings": ("worker.commands.settings", "print every setting with its default and range"),
    "check": ("worker.commands.check", "readiness: config, ffmpeg, database schema, storage access"),
    "enqueue": ("worker.commands.enqueue", "validate a render spec file and queue it; prints the job id"),
    "status": ("worker.commands.status", "show a job (--wait follows it until it is done)"),
    "stats": ("worker.commands.stats", "queue figures: pending, processing, failures, stuck"),
    "web": ("worker.commands.web", "the operator dashboard and the autoscaler's endpoint, on PORT"),
    "demo": ("worker.commands.demo", "the whole path locally: throwaway database and S3, one example job"),
}

USAGE = "usage: python -m worker <command> [options]\n\ncommands:\n" + "\n".join(
    f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module = import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)
