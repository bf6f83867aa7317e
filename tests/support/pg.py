"""A PostgreSQL server for the tests: the one given, the local one, or a throwaway cluster.

Order: TEST_DATABASE_URL (an admin URL) if set; else postgres@127.0.0.1:5432 if it answers; else
``initdb`` into a temp dir and start it on a free 127.0.0.1 port (as the ``postgres`` system user
when run as root), stopped by pid at the end. Each test run works in a database of its own,
dropped at the end. The machinery lives in :mod:`worker.local.pg` (``python -m worker demo`` uses
it too).
"""

from __future__ import annotations

import os

from worker.local.pg import LOCAL_URL, LocalDatabases
from worker.local.pg import TempCluster as _TempCluster

__all__ = ["LOCAL_URL", "TempCluster", "TestDatabases"]

HINT = (
    "no PostgreSQL server answers on 127.0.0.1:5432 and initdb is not installed; "
    "run `bash .ci/test` (it installs PostgreSQL) or set TEST_DATABASE_URL"
)


class TempCluster(_TempCluster):
    """initdb + pg_ctl in a temp dir; trust auth, 127.0.0.1 only."""

    def __init__(self) -> None:
        super().__init__("tests", HINT)


class TestDatabases(LocalDatabases):
    """Hands out throwaway databases on one server and drops them all at the end."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        super().__init__(os.environ.get("TEST_DATABASE_URL"), label="tests", missing_hint=HINT)
