"""The job pipeline (``JOB_HANDLER=worker.job.pipeline:render_job``, the default).

One job: validate the spec -> fetch each speech/music layer's audio (providers, storage, URL) and
the cover art -> render master + MP3 preview (ffmpeg) -> the extra deliverables (full-length MP3,
waveform peaks; tags and chapters in every file) -> upload them all -> return the result the claim
loop completes the job with. Progress: fetching 0-30 (split across input layers), render 30-90, upload 90-100;
stages ``tts``/``generate``/``fetch``, ``render``, ``upload``.

Failures are ``worker.errors`` classes, so the claim loop routes them: spec errors and permanent
provider/storage errors fail the job at once, transient ones are retried with backoff. Uploaded
objects are registered with ``ctx.on_discard`` before each upload starts, so a failed job or a
refused completion leaves nothing in storage. The job's temp dir is removed whatever happens.

Durable cleanup, for a worker killed between upload and completion: before the first upload every
key is noted in the job's row under its lease (``ctx.record_objects``; refused means the job is
no longer ours and nothing is uploaded). ``sweep`` (below) is this module's hook the claim loop
uses to delete such leftovers: before the job's next attempt, and as rescue leader for jobs that
ended without one. Completion keeps the result's own objects (SQL trigger, migration 0004).
``sweep_abandoned`` (below), the rescue leader's hook, aborts the shared provider cache's uploads a
killed worker left half-done: those are no job's objects.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger
from pydantic import ValidationError

from worker import logs
from worker.config import WorkerSettings, load_settings
from worker.errors import ChildKilled, JobError, PayloadError, PermanentError, RetryableError
from worker.job import workdir
from worker.job.inputs import download_object, fetch_input, stage_of
from worker.job.slots import provider_slots
from worker.providers import ProviderSettings, cache
from worker.queue.db.queue import Job
from worker.queue.handlers import JobContext
from worker.render import RenderResult, RenderSettings, parse_spec, render
from worker.render.deliverables import Deliverables, make_deliverables
from worker.render.spec import RenderSpec
from worker.render.tags import Cover, read_cover
from worker.render.toolcheck import check_tools
from worker.storage import Storage, StorageSettings, StoredObject

T = TypeVar("T")

FETCH_END, RENDER_END = 30.0, 90.0  # progress at the end of the fetch and render stages
PREVIEW_MARK = 95.0  # progress once the master is stored
# How often a process leading the rescue looks for the shared cache's abandoned uploads. They count
# as abandoned only after cache.ABANDONED_UPLOAD_AGE_S (a day), so listing them every round
# (RESCUE_INTERVAL_SECONDS) would be a request a minute for nothing; hourly aborts each one within
# an hour of its turning a day old.
ABANDONED_SWEEP_EVERY_S = 3600.0


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a job needs from the environment, read and validated once."""

    render: RenderSettings
    providers: ProviderSettings
    storage: Storage


_config: PipelineConfig | None = None
_late_cleanups: set[asyncio.Task[None]] = set()  # deletions running after a cancelled upload
_next_abandoned_sweep = 0.0  # time.monotonic() of this process's next sweep_abandoned


def load_config() -> PipelineConfig:
    """Read the render, provider and storage settings; exits naming each broken variable."""
    return PipelineConfig(
        render=load_settings(RenderSettings),
        providers=load_settings(ProviderSettings),
        storage=Storage(load_settings(StorageSettings)),
    )


def config() -> PipelineConfig:
    """The process-wide configuration (loaded on first use when prepare() did not run)."""
    global _config
    if _config is None:
        _config = load_config()
        install_shared_cache(_config)
    return _config


def install_shared_cache(cfg: PipelineConfig) -> None:
    """The provider cache's second level in Storage, with the fleet-wide lock on DATABASE_URL
    (PROVIDER_CACHE_SHARED, on by default; without a database URL identical requests on
    different dynos may both pay)."""
    s = cfg.storage.settings
    if not (s.provider_cache_shared and cfg.providers.provider_cache_enabled):
        cache.install_shared(None)
        return
    try:
        database_url: str | None = WorkerSettings().database_url.get_secret_value()
    except ValidationError:  # no DATABASE_URL (a pipeline run outside a worker): no fleet lock
        database_url = None
    cache.install_shared(
        cache.SharedCache(
            cfg.storage,
            bucket=s.provider_cache_bucket_name,
            prefix=s.provider_cache_prefix,
            lock=cache.FleetLock(database_url) if database_url else None,
            wait_s=s.provider_cache_wait_s,
        )
    )


async def prepare() -> None:
    """Start-up check (``python -m worker run`` awaits it before claiming): settings valid, storage
    credentials present, ffmpeg/ffprobe present with every filter and encoder the engine uses;
    then removes the temp files of dead worker processes. Raises SystemExit with one line per problem."""
    global _config
    cfg = load_config()
    problems = await asyncio.to_thread(check_tools, cfg.render.ffmpeg_path, cfg.render.ffprobe_path)
    s = cfg.storage.settings
    if not s.storage_s3_access_key_id or not s.storage_s3_secret_access_key.get_secret_value():
        problems.append(
            "storage credentials missing: set STORAGE_S3_ACCESS_KEY_ID and "
            "STORAGE_S3_SECRET_ACCESS_KEY (Supabase Dashboard -> Storage -> S3 Connection)"
        )
    if problems:
        raise SystemExit("worker: cannot start:\n" + "\n".join(problems))
    await asyncio.to_thread(workdir.clean_dead, cfg.render.tmp_dir)
    _register_secrets(cfg)
    _config = cfg
    install_shared_cache(cfg)
    logger.info(
        "pipeline ready: ffmpeg {}, storage {} (masters -> {}, previews -> {})",
        cfg.render.ffmpeg_path,
        s.endpoint,
        s.master_bucket,
        s.preview_bucket,
    )


def _register_secrets(cfg: PipelineConfig) -> None:
    """Mask provider keys and the storage secret in every log line, like the database password."""
    logs.add_secrets(
        [*cfg.providers.secrets(), cfg.storage.settings.storage_s3_secret_access_key.get_secret_value()]
    )


async def render_job(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Render and publish one job; returns its result (URLs, sizes, duration, loudness)."""
    cfg = config()
    spec = parse_spec(job.payload, cfg.render)
    # Under this process's locked scratch dir: if the process is killed, the next worker to start
    # removes what it left (worker.job.workdir). The render's own temp files go inside too.
    work = Path(tempfile.mkdtemp(prefix=f"job-{job.id}-", dir=workdir.process_dir(cfg.render.tmp_dir)))
    render_settings = cfg.render.model_copy(update={"tmp_dir": work})
    in_flight: list[asyncio.Future[Any]] = []  # an upload thread, which outlives a cancel
    try:
        cover = await _fetch_cover(spec, work / "inputs", cfg)  # first: a bad cover fails before paid TTS
        with provider_slots(job, ctx, cfg.providers):
            inputs = await _fetch_inputs(spec.input_layers(), work / "inputs", cfg, ctx)

        ctx.report(FETCH_END, "render")
        span = RENDER_END - FETCH_END
        result = await render(
            spec,
            inputs,
            work / "out",
            settings=render_settings,
            on_progress=lambda p: ctx.report(FETCH_END + span * p / 100),
        )

        result, extra = await make_deliverables(spec, result, cover=cover, settings=cfg.render)

        ctx.report(RENDER_END, "upload")
        stored = await _upload(job, result, extra, cfg.storage, ctx, work, in_flight)
        ctx.report(99)
        return build_result(result, stored, extra)
    finally:
        if not (in_flight and not in_flight[-1].done()):  # else removed once the thread ends
            await asyncio.to_thread(shutil.rmtree, work, True)


async def _fetch_inputs(
    layers: list[Any], out_dir: Path, cfg: PipelineConfig, ctx: JobContext
) -> dict[str, Path]:
    """Each input layer's audio file, fetched in spec order; progress 0-30 shared among them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs: dict[str, Path] = {}
    share = FETCH_END / max(len(layers), 1)
    for i, layer in enumerate(layers):
        ctx.report(i * share, stage_of(layer))
        try:
            inputs[layer.key] = await fetch_input(
                layer, out_dir, providers=cfg.providers, storage=cfg.storage
            )
        except PayloadError:
            raise
        except ChildKilled as exc:  # keep the class: during shutdown the job is released
            raise ChildKilled(f"{layer.key}: {exc.what}", exc.signum) from None
        except JobError as exc:  # say which layer failed; keep the class (retryable or not)
            cls = RetryableError if exc.retryable else PermanentError
            raise cls(f"{layer.key}: {exc}") from None
        ctx.report((i + 1) * share)
    return inputs


async def _fetch_cover(spec: RenderSpec, out_dir: Path, cfg: PipelineConfig) -> Cover | None:
    """The cover image named by ``tags.cover`` (a storage object), checked: JPEG or PNG, 10 MiB."""
    if spec.tags is None or spec.tags.cover is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = await asyncio.to_thread(download_object, cfg.storage, spec.tags.cover, out_dir, "tags.cover")
    return read_cover(path)


async def _upload(
    job: Job,
    result: RenderResult,
    extra: Deliverables,
    storage: Storage,
    ctx: JobContext,
    work: Path,
    in_flight: list[asyncio.Future[Any]],
) -> dict[str, StoredObject]:
    """Upload master, preview and the extras (full-length MP3 beside the master, peaks beside
    the preview) side by side; returned by name. Every key is registered for deletion on discard before the first byte
    is sent, so a failure or cancel between the uploads leaves nothing behind."""
    s = storage.settings
    stamp = time.time_ns() // 1_000_000

    def key(ext: str, variant: str | None = None) -> str:
        return storage.object_key(str(job.id), ext, timestamp_ms=stamp, variant=variant)

    plan = [
        ("master", result.master, s.master_bucket, key(result.master.suffix)),
        ("preview", result.preview, s.preview_bucket, key("mp3")),
    ]
    if extra.full is not None:
        plan.append(("full", extra.full, s.master_bucket, key("mp3", "full")))
    if extra.peaks is not None:
        plan.append(("peaks", extra.peaks, s.preview_bucket, key("json", "peaks")))
    handles = [
        StoredObject(bucket=b, key=k, size=0, sha256="", content_type="", url="") for _, _, b, k in plan
    ]

    async def discard() -> None:
        logger.info("discarding uploaded objects: {}", ", ".join(f"{h.bucket}/{h.key}" for h in handles))
        try:
            await asyncio.to_thread(storage.purge, handles)
        except JobError as exc:  # still listed in the job's row: swept later
            logger.error("storage: could not delete the discarded objects: {}", exc)
            return
        await ctx.forget_objects(objects)

    objects = [{"bucket": b, "key": k} for _, _, b, k in plan]
    if not await ctx.record_objects(objects):
        raise RetryableError("the job is no longer this worker's (lease lost or job ended): nothing uploaded")
    ctx.on_discard(discard)
    # All at once: each upload mostly waits on storage (a round trip, the server taking the body),
    # so the preview and the extras travel while the master does. One future for the lot, done
    # when every thread is: a failure is raised (the first in plan order) only once nothing is
    # still writing, so the discard that follows deletes everything.
    uploads = [
        asyncio.ensure_future(asyncio.to_thread(storage.upload_file, path, bucket=bucket, key=k))
        for _, path, bucket, k in plan
    ]
    uploads[0].add_done_callback(
        lambda f: None if f.cancelled() or f.exception() else ctx.report(PREVIEW_MARK)
    )
    everything = asyncio.gather(*uploads, return_exceptions=True)
    in_flight.append(everything)
    results = await _uninterruptible(everything, handles, storage, work)
    stored: dict[str, StoredObject] = {}
    for (name, *_), r in zip(plan, results, strict=True):
        if isinstance(r, BaseException):
            raise r
        stored[name] = r
    return stored


async def _uninterruptible(
    fut: asyncio.Future[T], handles: list[StoredObject], storage: Storage, work: Path
) -> T:
    """Await an upload running in a thread. A thread cannot be stopped: if the job is cancelled
    meanwhile, the upload may still land after the claim loop's cleanup ran, so once the thread
    ends the objects are deleted again and the job's temp dir (which it reads) is removed."""
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        loop = asyncio.get_running_loop()

        async def cleanup() -> None:
            await asyncio.to_thread(storage.delete_objects, handles)
            await asyncio.to_thread(shutil.rmtree, work, True)

        def late_cleanup(done: asyncio.Future[T]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved: the attempt is over, its outcome is moot
            task = loop.create_task(cleanup())
            _late_cleanups.add(task)
            task.add_done_callback(_late_cleanups.discard)

        fut.add_done_callback(late_cleanup)
        raise


async def sweep(objects: list[dict[str, str]]) -> None:
    """The claim loop's hook: delete objects an attempt noted with ``ctx.record_objects`` and never
    cleaned up (its process died), and abort the incomplete multipart uploads of their keys (a
    process killed mid-upload leaves one). Missing objects are fine; raises a JobError if storage
    kept anything."""
    handles = [
        StoredObject(bucket=o["bucket"], key=o["key"], size=0, sha256="", content_type="", url="")
        for o in objects
    ]
    await asyncio.to_thread(config().storage.purge, handles)


async def sweep_abandoned() -> None:
    """The rescue leader's hook (every round; real work at most every ABANDONED_SWEEP_EVERY_S in a
    process): abort the shared provider cache's incomplete uploads that dead workers left (see
    ``cache.ABANDONED_UPLOAD_AGE_S``). Also with PROVIDER_CACHE_SHARED off now: it may have been on
    when the worker died. Raises a JobError when storage cannot be listed (tried again next time)."""
    global _next_abandoned_sweep
    if time.monotonic() < _next_abandoned_sweep:
        return
    _next_abandoned_sweep = time.monotonic() + ABANDONED_SWEEP_EVERY_S
    storage = config().storage
    s = storage.settings
    level = cache.SharedCache(storage, bucket=s.provider_cache_bucket_name, prefix=s.provider_cache_prefix)
    await level.abort_abandoned_uploads()


def build_result(
    r: RenderResult, stored: dict[str, StoredObject], extra: Deliverables | None = None
) -> dict[str, Any]:
    """The job's result. ``wav_url`` keeps its column's name even for a FLAC master; ``full``,
    ``peaks`` and ``chapters`` are there when the spec made them."""
    details = r.model_dump(mode="json", exclude={"master", "preview"})
    master, preview = stored["master"], stored["preview"]
    out: dict[str, Any] = {
        "wav_url": master.url,
        "master_url": master.url,
        "mp3_url": preview.url,
        "result_url": preview.url,
        "master": master.model_dump(mode="json"),
        "preview": preview.model_dump(mode="json"),
        "duration_s": r.duration_s,
        "sample_rate": r.sample_rate,
        "loudness": {
            "integrated_lufs": r.integrated_lufs,
            "true_peak_dbtp": r.true_peak_dbtp,
            "lra": r.lra,
            "target_lufs": r.target_lufs,
            "ceiling_dbtp": r.ceiling_dbtp,
            "anchor": r.anchor,
            "speech_lufs": r.speech_lufs,
            "preview_true_peak_dbtp": r.preview_true_peak_dbtp,
            "full_true_peak_dbtp": r.full_true_peak_dbtp,
            "on_target": r.on_target,
            "warnings": r.warnings,
        },
        "render": details,
    }
    for name in ("full", "peaks"):
        if name in stored:
            out[name] = stored[name].model_dump(mode="json")
    if extra is not None and extra.chapters:
        out["chapters"] = [
            {"title": c.title, "start_s": round(c.start_s, 3), "end_s": round(c.end_s, 3)}
            for c in extra.chapters
        ]
    return out
