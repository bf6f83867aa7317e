"""Client-side rate limits and backoff timing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.providers.conftest import run
from worker.providers.ratelimit import SlidingWindowLimiter, limiter_for
from worker.providers.retry import RetryPolicy

pytestmark = pytest.mark.timeout(30)


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + window - 1e-3) for t in times)


def test_never_more_than_limit_per_window():
    limiter = SlidingWindowLimiter(limit=5, window=0.2)
    scheduled: list[float] = []
    real_reserve = limiter.reserve

    def reserve() -> float:  # record the moment each caller was granted, free of wake-up jitter
        wait = real_reserve()
        scheduled.append(time.monotonic() + wait)
        return wait

    limiter.reserve = reserve  # type: ignore[method-assign]

    async def many() -> None:
        await asyncio.gather(*(limiter.acquire("t") for _ in range(15)))

    started = time.monotonic()
    run(many())
    assert time.monotonic() - started >= 0.38  # 15 grants need three windows
    assert _max_in_window(scheduled, 0.2) <= 5


def test_shared_across_event_loops_and_threads():
    limiter = limiter_for("test-shared", 4, 0.3)
    assert limiter_for("test-shared", 4, 0.3) is limiter
    scheduled: list[float] = []
    lock = threading.Lock()
    real_reserve = limiter.reserve

    def reserve() -> float:
        with lock:
            wait = real_reserve()
            scheduled.append(time.monotonic() + wait)
            return wait

    limiter.reserve = reserve  # type: ignore[method-assign]

    def worker() -> None:
        async def go() -> None:
            for _ in range(3):
                await limiter_for("test-shared", 4, 0.3).acquire()

        asyncio.run(go())

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(scheduled) == 9 and _max_in_window(scheduled, 0.3) <= 4
    assert time.monotonic() - started >= 0.58  # 9 grants at 4 per 0.3 s span three windows


def test_stability_default_is_150_per_10s():
    from worker.providers import ProviderSettings

    s = ProviderSettings()
    assert (s.stable_audio_rate_limit, s.stable_audio_rate_window_s) == (150, 10.0)
    limiter = SlidingWindowLimiter(s.stable_audio_rate_limit, s.stable_audio_rate_window_s)
    waits = [limiter.reserve() for _ in range(151)]
    assert max(waits[:150]) == 0 and waits[150] > 9.0


def test_backoff_grows_exponentially_with_jitter_and_cap():
    policy = RetryPolicy(max_retries=10, base_delay_s=1.0, max_delay_s=8.0)
    for retry, ceiling in [(0, 1), (1, 2), (2, 4), (3, 8), (6, 8)]:
        delays = [policy.backoff(retry) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not fixed
