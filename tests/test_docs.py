"""The README tells the truth: settings, commands and the CI entry point match the code."""

from __future__ import annotations

import re
from pathlib import Path

from worker.cli import COMMANDS
from worker.commands.settings import README, markdown, readme_block, settings_classes

REPO = Path(__file__).resolve().parents[1]


def test_readme_configuration_block_matches_the_settings_classes():
    assert readme_block(README.read_text()) == markdown().strip(), (
        "README configuration is stale: run `uv run python -m worker settings --update-readme`"
    )


def test_every_setting_is_described():
    missing = [
        f"{cls.__name__}.{name}"
        for _, cls in settings_classes()
        for name, field in cls.model_fields.items()
        if not field.description
    ]
    assert not missing, f"settings without a description (README would show a blank): {missing}"


def test_ci_runs_the_readme_test_command():
    readme = README.read_text()
    assert "bash .ci/test" in readme
    assert re.search(r"^(exec )?bash \.ci/test\b", (REPO / ".ci" / "run").read_text(), re.MULTILINE)


def test_readme_commands_exist():
    readme = README.read_text()
    for cmd in set(re.findall(r"python -m worker (\w+)", readme)):
        assert cmd in COMMANDS, f"README mentions `python -m worker {cmd}`, which does not exist"


def test_runbook_files_in_readme_exist():
    readme = README.read_text()
    listed = set(re.findall(r"`sql/(\w+\.sql)`", readme))
    on_disk = {p.name for p in (REPO / "sql").glob("*.sql")}
    assert listed == on_disk


def test_procfile_runs_migrations_on_release_and_the_worker():
    procs = dict(line.split(":", 1) for line in (REPO / "Procfile").read_text().splitlines() if line.strip())
    assert procs["release"].strip() == "python -m worker migrate"
    assert procs["worker"].strip() == "python -m worker run"
