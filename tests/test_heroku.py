"""Heroku packaging: app.json against Heroku's manifest schema, Procfile, apt packages, the lock."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from worker.commands.heroku import HEROKU_MANAGED, REQUIRED_ON_HEROKU, app_json_env
from worker.commands.settings import env_name, settings_classes

REPO = Path(__file__).resolve().parents[1]
MANIFEST = json.loads((REPO / "app.json").read_text())

# Heroku's app.json schema (devcenter.heroku.com/articles/app-json-schema): field -> JSON type.
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "description": str,
    "keywords": list,
    "website": str,
    "repository": str,
    "logo": str,
    "success_url": str,
    "scripts": dict,
    "env": dict,
    "formation": dict,
    "image": str,
    "addons": list,
    "buildpacks": list,
    "environments": dict,
    "stack": str,
}
ENV_FIELDS = {"description", "value", "required", "generator"}
FORMATION_FIELDS = {"quantity", "size"}
SIZES = {
    "eco",
    "basic",
    "standard-1x",
    "standard-2x",
    "performance-m",
    "performance-l",
    "performance-l-ram",
    "performance-xl",
    "performance-2xl",
}


def procfile() -> dict[str, str]:
    lines = (REPO / "Procfile").read_text().splitlines()
    return {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ln.strip())}


def settings_env() -> dict[str, bool]:
    """Every variable the settings classes read (minus those Heroku sets itself) -> required."""
    env = {
        env_name(n, f, cls): f.is_required()
        for _, cls in settings_classes()
        for n, f in cls.model_fields.items()
    }
    return {k: v for k, v in env.items() if k not in HEROKU_MANAGED}


def test_manifest_uses_only_fields_of_herokus_schema_with_their_types():
    unknown = set(MANIFEST) - set(SCHEMA)
    assert not unknown, f"not in Heroku's app.json schema: {unknown}"
    for key, value in MANIFEST.items():
        assert isinstance(value, SCHEMA[key]), f"{key} must be a {SCHEMA[key]}"
    assert re.fullmatch(r"[a-z][a-z0-9-]{2,29}", MANIFEST["name"])
    assert MANIFEST["description"] and all(isinstance(k, str) for k in MANIFEST["keywords"])
    assert MANIFEST["stack"] == "heroku-24"
    assert "addons" not in MANIFEST, "the product's database is Supabase: no Heroku Postgres add-on"


FFMPEG_BUILDPACK = "https://github.com/heroku/heroku-buildpack-activestorage-preview"


def test_buildpacks_ffmpeg_first_then_apt_for_espeak_then_python():
    urls = [bp["url"] for bp in MANIFEST["buildpacks"]]
    assert all(set(bp) == {"url"} for bp in MANIFEST["buildpacks"])
    # Heroku's own FFmpeg build (libmp3lame, pinned per stack), not a download of a third-party
    # static build at every deploy: README "Which ffmpeg, and why".
    assert urls[0] == FFMPEG_BUILDPACK
    assert not any("ffmpeg-latest" in u for u in urls)
    readme = (REPO / "README.md").read_text()
    assert f"heroku buildpacks:add --index 1 {FFMPEG_BUILDPACK}" in readme
    assert "Which ffmpeg, and why" in readme
    assert urls[-1] == "heroku/python"
    assert "heroku-community/apt" in urls
    assert "espeak-ng" in (REPO / "Aptfile").read_text().split()
    profile = (REPO / ".profile.d" / "espeak-ng.sh").read_text()
    assert "ESPEAK_DATA_PATH" in profile
    sh = shutil.which("bash")
    if sh:
        subprocess.run([sh, "-n", str(REPO / ".profile.d" / "espeak-ng.sh")], check=True)


def test_formation_runs_one_worker_of_a_procfile_process_type():
    procs = procfile()
    assert set(procs) == {"release", "worker", "web"}
    assert procs["release"] == "python -m worker migrate"
    assert procs["worker"] == "python -m worker run"
    assert procs["web"] == "python -m worker web"
    formation = MANIFEST["formation"]
    assert set(formation) <= set(procs) - {"release"}
    assert formation["worker"]["quantity"] == 1
    assert formation["web"]["quantity"] == 0, "the dashboard costs nothing until someone scales it up"
    for spec in formation.values():
        assert set(spec) <= FORMATION_FIELDS
        assert isinstance(spec["quantity"], int) and spec["quantity"] >= 0
        assert spec.get("size", "basic") in SIZES


def test_env_lists_every_setting_and_nothing_else():
    assert set(MANIFEST["env"]) == set(settings_env())


def test_env_block_is_the_generated_one():
    assert MANIFEST["env"] == app_json_env(), (
        "app.json is stale: run `uv run python -m worker.commands.heroku`"
    )


def test_env_entries_have_herokus_fields_and_explicit_required_flags():
    required = {name for name, req in settings_env().items() if req} | REQUIRED_ON_HEROKU
    for name, entry in MANIFEST["env"].items():
        assert set(entry) <= ENV_FIELDS, name
        assert isinstance(entry["description"], str) and entry["description"], name
        assert isinstance(entry["required"], bool), f"{name}: Heroku treats a missing required as true"
        assert entry["required"] == (name in required), name
        if "value" in entry:
            assert isinstance(entry["value"], str), name
    assert {n for n, e in MANIFEST["env"].items() if e["required"]} == {
        "DATABASE_URL",
        "SUPABASE_URL",
        "STORAGE_S3_ACCESS_KEY_ID",
        "STORAGE_S3_SECRET_ACCESS_KEY",
    }


def test_secrets_have_no_value():
    for name, entry in MANIFEST["env"].items():
        if re.search(r"KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL", name):
            assert "value" not in entry, f"{name} must not carry a value in app.json"


def test_defaults_are_the_settings_defaults():
    env = MANIFEST["env"]
    assert env["MAX_CONCURRENT_JOBS"]["value"] == "2"
    assert env["JOB_HANDLER"]["value"] == "worker.job.pipeline:render_job"
    assert env["STORAGE_URL_MODE"]["value"] == "public"
    assert "value" not in env["PROVIDER_CACHE_DIR"], "a computed default is left to the code"


def test_python_version_file_satisfies_requires_python():
    version = (REPO / ".python-version").read_text().strip()
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    major_minor = tuple(int(x) for x in version.split(".")[:2])
    lo = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", requires).group(1).split(".")[:2])
    hi = tuple(int(x) for x in re.search(r"<\s*([\d.]+)", requires).group(1).split(".")[:2])
    assert lo <= major_minor < hi


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_uv_lock_is_in_step_with_pyproject():
    out = subprocess.run(
        ["uv", "lock", "--check", "--offline"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"uv.lock is stale (run `uv lock`):\n{out.stderr}"
    assert not (REPO / "requirements.txt").exists(), "one lock for the Python buildpack: uv.lock"


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_the_slug_gets_runtime_packages_only():
    """Heroku's Python buildpack runs `uv sync --locked --no-default-groups`: the worker's own
    packages go in the slug, the test and demo tools (moto's S3 server, Flask, pytest) do not."""
    out = subprocess.run(
        ["uv", "export", "--frozen", "--no-default-groups", "--no-hashes", "--offline"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    names = {
        line.split("==")[0].split("[")[0].strip().lower()
        for line in out.stdout.splitlines()
        if line and not line.startswith(("#", " ", "-e", "."))
    }
    assert {"psycopg", "psycopg-pool", "httpx", "ffmpeg-python", "boto3", "pydantic", "loguru"} <= names
    assert not names & {"moto", "flask", "werkzeug", "pytest", "hypothesis", "numpy", "scipy"}, names
