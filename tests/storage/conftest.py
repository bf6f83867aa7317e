"""Fixtures for storage tests: one moto S3 server per module, files written to tmp dirs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.s3 import S3Server
from worker.storage import Storage

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def storage(s3: S3Server) -> Storage:
    return Storage(s3.settings())


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[[str, int], Path]:
    """Write ``size`` random bytes to tmp_path/name."""

    def make(name: str, size: int) -> Path:
        path = tmp_path / name
        with path.open("wb") as file:
            for start in range(0, size, MiB):
                file.write(os.urandom(min(MiB, size - start)))
        return path

    return make
