"""The worker's Prometheus metrics: one registry per process, names prefixed ``audio_worker_``.

Nothing is recorded until :func:`install` is called (the run command does it when the health
endpoint is on), so code that reports into this module (providers, storage) costs one global
lookup when metrics are off. Everything here is thread-safe (uploads run in threads).

Queue depth is not counted here: it is read from the database at scrape time (see
``worker.observe.http``) and handed to :class:`QueueCollector` as a snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "audio_worker_"
OUTCOMES = ("completed", "failed", "retrying", "refused", "timeout", "released", "cancelled")
LIVE_STATUSES = ("pending", "queued", "processing")
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


@dataclass(frozen=True)
class QueueSnapshot:
    """Jobs by live status and the age (s) of the oldest runnable job, as read at scrape time."""

    jobs: dict[str, int]
    oldest_pending_seconds: float


class QueueCollector(Collector):
    """Yields the last snapshot's gauges; yields nothing when the last read failed (no stale data)."""

    def __init__(self) -> None:
        self.snapshot: QueueSnapshot | None = None

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        jobs = GaugeMetricFamily(
            PREFIX + "queue_jobs", "Jobs in the queue by status (live statuses only).", labels=["status"]
        )
        for status in LIVE_STATUSES:
            jobs.add_metric([status], snap.jobs.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            PREFIX + "queue_oldest_pending_seconds",
            "Age of the oldest job that could run now (0 when none waits).",
            value=snap.oldest_pending_seconds,
        )


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter(
            PREFIX + "jobs", "Jobs this process finished, by outcome.", ["outcome"], registry=r
        )
        self.job_seconds = Histogram(
            PREFIX + "job_duration_seconds",
            "Claim to recorded outcome, by outcome.",
            ["outcome"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            PREFIX + "stage_duration_seconds",
            "Time a job spent in each stage.",
            ["stage"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.provider_seconds = Histogram(
            PREFIX + "provider_request_seconds",
            "One provider HTTP exchange.",
            ["provider"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.provider_errors = Counter(
            PREFIX + "provider_errors",
            "Failed provider HTTP exchanges, by kind.",
            ["provider", "kind"],
            registry=r,
        )
        self.upload_bytes = Counter(
            PREFIX + "upload_bytes", "Bytes uploaded to storage.", ["bucket"], registry=r
        )
        self.upload_failures = Counter(
            PREFIX + "upload_failures", "Uploads that failed after their retries.", registry=r
        )
        self.claims = Counter(PREFIX + "claims", "Jobs claimed by this process.", registry=r)
        self.queue_errors = Counter(
            PREFIX + "queue_query_errors", "Scrapes whose queue-depth query failed.", registry=r
        )
        self.webhooks = Counter(
            PREFIX + "webhooks", "Completion webhooks, by result (delivered|failed).", ["result"], registry=r
        )
        self.queue = QueueCollector()
        r.register(self.queue)
        # Children resolved once: the claim loop's per-job cost is a lock and an add.
        self._jobs = {o: self.jobs.labels(o) for o in OUTCOMES}
        self._job_seconds = {o: self.job_seconds.labels(o) for o in OUTCOMES}

    def job(self, outcome: str, seconds: float, stages: dict[str, float]) -> None:
        self._jobs[outcome].inc()
        self._job_seconds[outcome].observe(seconds)
        for stage, s in stages.items():
            self.stage_seconds.labels(stage).observe(s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


_active: Metrics | None = None


def install() -> Metrics:
    """Start recording (idempotent); returns the process's metrics."""
    global _active
    if _active is None:
        _active = Metrics()
    return _active


def active() -> Metrics | None:
    return _active


# -- hooks for code that does not know about the claim loop ---------------------------------------


def provider_request(provider: str, seconds: float, error_kind: str | None = None) -> None:
    """One provider HTTP exchange took ``seconds``; ``error_kind`` when it failed."""
    m = _active
    if m is None:
        return
    m.provider_seconds.labels(provider).observe(seconds)
    if error_kind is not None:
        m.provider_errors.labels(provider, error_kind).inc()


def uploaded(bucket: str, size: int) -> None:
    if (m := _active) is not None:
        m.upload_bytes.labels(bucket).inc(size)


def upload_failed() -> None:
    if (m := _active) is not None:
        m.upload_failures.inc()
