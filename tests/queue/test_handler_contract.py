"""The shipped handler module holds the contract and the loader only: no scaffolding a payload can
steer (the test ``sleep`` handler could SIGKILL its own worker) is selectable with JOB_HANDLER."""

from __future__ import annotations

import pytest

import worker.queue.handlers as contract
from worker.queue.handlers import load_handler


def test_test_handlers_are_not_in_the_shipped_package():
    assert not hasattr(contract, "sleep") and not hasattr(contract, "noop")
    for name in ("worker.queue.handlers:sleep", "worker.handlers:sleep", "worker.queue.handlers:noop"):
        with pytest.raises(SystemExit, match="JOB_HANDLER: cannot load"):
            load_handler(name)


def test_tests_load_their_handlers_from_tests():
    handler, prepare = load_handler("tests.handlers:noop")
    assert callable(handler) and prepare is None
