"""The contract between the claim loop and a job's work, and the loader of JOB_HANDLER.

A handler is ``async def handler(job: Job, ctx: JobContext) -> dict``: it returns the job's result
(JSON-able) or raises one of ``worker.errors``' classes. The claim loop does everything else:
heartbeats, timeouts, cancellation, completion, release on shutdown. Select one with JOB_HANDLER.

A handler that starts child processes must kill them when it is cancelled (asyncio.CancelledError):
the claim loop cancels it when the lease is lost, a cancel is requested, JOB_TIMEOUT_MS passes or
shutdown's grace ends. Anything published before that (uploaded objects) is registered with
``ctx.on_discard`` so it is removed when the job's completion is refused or the job fails.

Durable cleanup (objects of an attempt whose process died, so ``on_discard`` never ran): before
uploading, a handler calls ``await ctx.record_objects([{"bucket": b, "key": k}, ...])``; the claim
loop writes them to the job's row under its lease (``audio_queue.record_objects``; False means the
job is no longer this attempt's: do not upload). When they are deleted, ``ctx.forget_objects``
takes them off; when the job completes, the objects its result refers to leave the list (SQL
trigger). Whatever stays listed is deleted through the handler module's optional hook
``async def sweep(objects: list[dict]) -> None`` (raise if any could not be deleted): by the claim
loop before the job's next attempt runs its handler, and by the rescue leader for finished jobs
(``audio_queue.orphaned_objects``). A module without ``sweep`` leaves the lists alone.

What a module writes outside any job's list (the pipeline's shared provider cache) has a second
optional hook, ``async def sweep_abandoned() -> None``: the rescue leader awaits it every round
after the orphaned objects, to remove what dead processes left there. It decides itself how often
to do real work; an exception is logged and the next round tries again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Protocol

from worker.queue.db.queue import Job


@dataclass
class JobContext:
    """What a running handler can tell the claim loop."""

    worker_id: str
    progress: int = 0
    stage: str | None = None
    discards: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Seconds spent in each stage so far (a stage entered twice adds up); see stage_durations().
    stage_seconds: dict[str, float] = field(default_factory=dict)
    _stage_since: float = field(default=0.0, repr=False)
    # Wired by the claim loop to audio_queue.record_objects / forget_objects for this job's lease;
    # None (a handler run outside the claim loop, e.g. in a test) accepts everything and forgets nothing.
    recorder: Callable[[list[dict[str, str]]], Awaitable[bool]] | None = field(default=None, repr=False)
    forgetter: Callable[[list[dict[str, str]]], Awaitable[object]] | None = field(default=None, repr=False)
    # Wired by the claim loop: ``await db(fn, *args)`` runs a worker.queue.db.queue call on the
    # worker's pool with its connection retries (provider slots use it). None outside the loop.
    db: Callable[..., Awaitable[Any]] | None = field(default=None, repr=False)

    def report(self, progress: float | None = None, stage: str | None = None) -> None:
        """Record progress (0-100) and/or the current stage; sent with the next heartbeat."""
        if progress is not None:
            self.progress = max(0, min(100, int(progress)))
        if stage is not None and stage != self.stage:
            now = time.monotonic()
            if self.stage is not None:
                self.stage_seconds[self.stage] = (
                    self.stage_seconds.get(self.stage, 0.0) + now - self._stage_since
                )
            self.stage, self._stage_since = stage, now

    def stage_durations(self) -> dict[str, float]:
        """Time per stage, counting the current stage up to now (call when the work has ended)."""
        if self.stage is not None:
            now = time.monotonic()
            self.stage_seconds[self.stage] = self.stage_seconds.get(self.stage, 0.0) + now - self._stage_since
            self._stage_since = now
        return self.stage_seconds

    def on_discard(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        """Run ``cleanup`` if this attempt's work is thrown away (refused completion, failure)."""
        self.discards.append(cleanup)

    async def record_objects(self, objects: list[dict[str, str]]) -> bool:
        """Note, in the job's row, objects this attempt is about to write ([{"bucket", "key"}]),
        before writing them: if the process dies, they are deleted later. False: the job is no
        longer ours (lease lost); do not write them."""
        if self.recorder is None:
            return True
        return await self.recorder(objects)

    async def forget_objects(self, objects: list[dict[str, str]]) -> None:
        """The objects were deleted: take them off the job's list (best effort; a stale entry only
        costs a repeated, harmless delete later)."""
        if self.forgetter is not None:
            await self.forgetter(objects)


Sweeper = Callable[[list[dict[str, str]]], Awaitable[None]]
AbandonedSweeper = Callable[[], Awaitable[None]]


# JOB_HANDLER values written before the package was grouped by stage keep working.
MOVED_MODULES = {"worker.pipeline": "worker.job.pipeline"}


class Handler(Protocol):
    def __call__(self, job: Job, ctx: JobContext) -> Awaitable[dict[str, Any]]: ...


def load_handler(spec: str) -> tuple[Handler, Callable[[], Coroutine[Any, Any, None]] | None]:
    """Import ``module:function``; raises SystemExit with a clear message when it is not there.

    Returns the handler and the module's ``async def prepare()`` if it has one: the run command
    awaits it once before claiming, so a missing tool or setting stops the worker at start (raise
    SystemExit with the message) instead of failing every job.
    """
    module_name, _, attr = spec.partition(":")
    module_name = MOVED_MODULES.get(module_name, module_name)
    if not module_name or not attr:
        raise SystemExit(f"JOB_HANDLER: must look like module:function (got {spec!r})")
    try:
        module = import_module(module_name)
        fn = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"JOB_HANDLER: cannot load {spec!r}: {exc}") from None
    return fn, getattr(module, "prepare", None)


def load_sweeper(spec: str) -> Sweeper | None:
    """The handler module's ``async def sweep(objects)`` (deletes objects an attempt left), or None."""
    hook: Sweeper | None = _module_hook(spec, "sweep")
    return hook


def load_abandoned_sweeper(spec: str) -> AbandonedSweeper | None:
    """The handler module's ``async def sweep_abandoned()`` (for the rescue leader), or None."""
    hook: AbandonedSweeper | None = _module_hook(spec, "sweep_abandoned")
    return hook


def _module_hook(spec: str, name: str) -> Any:
    module_name, _, _ = spec.partition(":")
    module_name = MOVED_MODULES.get(module_name, module_name)
    try:
        module = import_module(module_name)
    except ImportError:
        return None
    return getattr(module, name, None)
