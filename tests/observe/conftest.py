"""Fixtures of the observability tests: worker processes and webhook receivers on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.observe.support import Receiver
from tests.support.workers import WorkerFleet


@pytest.fixture
def fleet(db_url, tmp_path):
    f = WorkerFleet(db_url, tmp_path)
    yield f
    f.close()


@pytest.fixture
def receivers():
    """``receivers(**kw)`` starts a Receiver; all are stopped at the end of the test."""
    started: list[Receiver] = []

    def make(**kw) -> Receiver:
        r = Receiver(**kw).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()
