"""Heroku's dyno manager, as it stops a dyno: SIGTERM to every process of the dyno at once (the
worker and each child it started: ffmpeg, espeak-ng, ...), perhaps twice, then SIGKILL to whatever
is still alive 30 s after the first signal. Only processes of the given worker's tree are touched."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

HEROKU_KILL_AFTER_S = 30.0


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parens
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie has exited; only its status is left


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant of it, root first."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st[0] not in ("Z", "X"):
            parents.setdefault(st[1], []).append(int(entry))
    tree, todo = [], [root] if alive(root) else []
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


@dataclass
class Stopped:
    signalled: set[int] = field(default_factory=set)  # every pid that got SIGTERM
    children: set[int] = field(default_factory=set)  # those that were not the worker itself
    killed: list[int] = field(default_factory=list)  # still alive at the deadline: SIGKILLed
    took_s: float = 0.0


def heroku_stop(
    pid: int, *, times: int = 2, gap_s: float = 0.3, kill_after_s: float = HEROKU_KILL_AFTER_S
) -> Stopped:
    """Stop ``pid`` and its whole process tree the way Heroku stops a dyno: SIGTERM to each of
    them at once, ``times`` times ``gap_s`` apart, then SIGKILL to any left ``kill_after_s``
    after the first signal. Returns once all of them are gone. Reap ``pid`` yourself (Popen.wait)."""
    out = Stopped()
    started = time.monotonic()
    for i in range(times):
        if i:
            time.sleep(gap_s)
        tree = process_tree(pid)
        for p in tree:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                continue
            out.signalled.add(p)
    out.children = out.signalled - {pid}
    # Children may outlive the worker (ffmpeg runs in a session of its own): wait for each pid.
    watched = set(out.signalled)
    while time.monotonic() - started < kill_after_s:
        watched.update(process_tree(pid))
        watched = {p for p in watched if alive(p)}
        if not watched:
            break
        time.sleep(0.05)
    for p in sorted(watched):
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
                out.killed.append(p)
            except ProcessLookupError:
                pass
    out.took_s = time.monotonic() - started
    return out
