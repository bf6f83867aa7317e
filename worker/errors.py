"""The failure taxonomy every part of the worker speaks.

The claim loop decides a job's fate from the exception class alone:

- ``PayloadError``: the job's input is wrong; fail at once, never retry.
- ``PermanentError``: retrying cannot help (bad key, quota, content refused); fail at once.
- ``RetryableError``: may pass (timeouts, 5xx, storage outage); retried with backoff while
  attempts remain.

Messages are shown to users in ``jobs.error_message``: they must never hold a secret.
"""

from __future__ import annotations

import signal


class JobError(Exception):
    """Base class of errors that end a job's attempt with a user-facing message."""

    retryable: bool = False


class PayloadError(JobError):
    """The payload broke a rule. ``field`` is a dotted path (``layers[2].beat_hz``)."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"invalid payload: {field}: {rule}")


class PermanentError(JobError):
    """An error that retrying cannot fix."""


class RetryableError(JobError):
    """An error that may pass; the job goes back to the queue while attempts remain."""

    retryable = True


class ChildKilled(RetryableError):
    """A child process (ffmpeg, ffprobe, espeak-ng) was ended by a signal: the kernel's OOM killer,
    an operator, or the platform stopping the machine (Heroku signals every process of a dyno).
    Retryable; while the worker is shutting down the claim loop releases the job instead."""

    def __init__(self, what: str, signum: int) -> None:
        self.what = what
        self.signum = signum
        super().__init__(f"{what} was killed by {signal_name(signum)}")


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``signal 99`` for a number with no name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def check_exit(what: str, returncode: int | None) -> None:
    """Raise :class:`ChildKilled` if ``returncode`` (asyncio's: negative) says a signal ended the child."""
    if returncode is not None and returncode < 0:
        raise ChildKilled(what, -returncode)
