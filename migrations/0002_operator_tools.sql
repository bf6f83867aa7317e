-- 0002: functions behind the DBA runbook (sql/) and `python -m worker stats`, so that requeueing,
-- purging and the queue's figures follow one definition wherever they are run from.

create function audio_queue.queue_stats()
returns table (
    pending              bigint,
    scheduled            bigint,
    processing           bigint,
    completed_24h        bigint,
    failed_24h           bigint,
    cancelled_24h        bigint,
    oldest_pending_age   interval,
    failure_rate_24h     numeric,
    avg_duration_24h     interval,
    stuck                bigint
)
language sql stable set search_path = '' as $$
    select
        count(*) filter (where status in ('pending', 'queued') and run_at <= now()),
        count(*) filter (where status in ('pending', 'queued') and run_at > now()),
        count(*) filter (where status = 'processing'),
        count(*) filter (where status = 'completed' and completed_at > now() - interval '24 hours'),
        count(*) filter (where status = 'failed' and completed_at > now() - interval '24 hours'),
        count(*) filter (where status = 'cancelled' and completed_at > now() - interval '24 hours'),
        now() - min(run_at) filter (where status in ('pending', 'queued') and run_at <= now()),
        round(
            (count(*) filter (where status = 'failed' and completed_at > now() - interval '24 hours'))::numeric
            / nullif(count(*) filter (where status in ('completed', 'failed')
                                      and completed_at > now() - interval '24 hours'), 0), 4),
        avg(completed_at - started_at) filter (where status = 'completed'
                                               and completed_at > now() - interval '24 hours'),
        count(*) filter (where status = 'processing' and lease_expires_at < now())
    from audio_queue.jobs;
$$;


-- Put failed (or cancelled) jobs back in the queue with fresh attempts. Either one job by id, or
-- every failed job that finished within p_since.
create function audio_queue.requeue_jobs(
    p_job_id uuid default null,
    p_since  interval default '24 hours'
) returns integer
language plpgsql set search_path = '' as $$
declare
    v_count integer;
begin
    update audio_queue.jobs j
       set status = 'pending', attempts = 0, rescue_count = 0, cancel_requested = false,
           run_at = now(), error_message = null, completed_at = null, progress = 0, stage = null,
           lease_id = null, locked_by = null,
           last_error = coalesce('requeued by hand after: ' || j.error_message, j.last_error)
     where (p_job_id is not null and j.id = p_job_id and j.status in ('failed', 'cancelled'))
        or (p_job_id is null and j.status = 'failed' and j.completed_at > now() - p_since);
    get diagnostics v_count = row_count;
    if v_count > 0 then
        perform pg_notify('audio_queue_jobs', '');
    end if;
    return v_count;
end;
$$;


-- Delete finished jobs (completed, failed, cancelled) older than p_older_than. Their files in
-- storage are not touched.
create function audio_queue.purge_finished_jobs(p_older_than interval default '30 days')
returns integer
language plpgsql set search_path = '' as $$
declare
    v_count integer;
begin
    if p_older_than < interval '1 hour' then
        raise exception 'purge_finished_jobs: p_older_than must be at least 1 hour (got %)', p_older_than
            using errcode = '22023';
    end if;
    delete from audio_queue.jobs
     where status in ('completed', 'failed', 'cancelled')
       and completed_at < now() - p_older_than;
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (2, '0002_operator_tools')
on conflict (version) do nothing;
