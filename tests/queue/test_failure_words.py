"""The message a failed attempt leaves on the job, for errors the worker's own code raises."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest

from worker.queue.outcomes import failure_of


def finished_with(exc: BaseException):
    async def work():
        raise exc

    async def run():
        task = asyncio.ensure_future(work())
        await asyncio.gather(task, return_exceptions=True)
        return task

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.ENOSPC, "disk full"), (errno.EDQUOT, "disk full"), (errno.ENOMEM, "out of memory")],
)
def test_a_full_disk_in_the_workers_own_writes_is_named_and_retried(code, words, tmp_path):
    exc = OSError(code, os.strerror(code), str(tmp_path / "job-1" / "speech-0.mp3.part"))
    failure = failure_of(finished_with(exc))
    assert failure is not None and failure.retryable
    assert (
        failure.message
        == f"{words} writing speech-0.mp3.part ({errno.errorcode[code]}); the job will be retried"
    )
    assert str(tmp_path) not in failure.message  # no worker paths in what users see


def test_other_os_errors_stay_unexpected_and_retryable():
    failure = failure_of(finished_with(PermissionError(errno.EACCES, "Permission denied", "/x")))
    assert failure is not None and failure.retryable
    assert failure.message.startswith("unexpected error: PermissionError")
