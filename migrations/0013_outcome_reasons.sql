-- 0013: complete_job and release_job that say why. Their boolean answers "did it count", and a
-- false one means either that the job's lease was lost (another worker has it, or it was rescued)
-- or that a cancel was requested and the call ended the job as cancelled. The worker needs to
-- tell these apart (its log, its metrics), and read the job's row again to do so. These _v2
-- functions do exactly what the originals do (they call them, in the same transaction, with the
-- row still locked) and return the reason instead. The originals are unchanged: workers of
-- earlier releases keep calling them during a rolling deploy.

-- 'completed' | 'retrying' (back to pending with backoff) | 'failed' | 'cancelled' (a cancel was
-- requested: the job ended cancelled, the work must be discarded) | 'lost' (not this lease's job).
create function audio_queue.complete_job_v2(
    p_job_id    uuid,
    p_result    jsonb,
    p_error     text,
    p_lease_id  uuid,
    p_retryable boolean default false
) returns text
language plpgsql set search_path = '' as $$
declare
    v_ok     boolean;
    v_status text;
    v_lease  uuid;
begin
    if p_lease_id is null then
        raise exception 'complete_job_v2: p_lease_id is required (complete_job takes calls without one)'
            using errcode = '22023';
    end if;
    v_ok := audio_queue.complete_job(p_job_id, p_result, p_error, p_lease_id, p_retryable);
    select j.status, j.lease_id into v_status, v_lease from audio_queue.jobs j where j.id = p_job_id;
    if v_ok then
        return case v_status when 'completed' then 'completed' when 'failed' then 'failed' else 'retrying' end;
    end if;
    -- complete_job ends a job whose cancel was requested and keeps its lease id on the row.
    return case when v_status = 'cancelled' and v_lease = p_lease_id then 'cancelled' else 'lost' end;
end;
$$;

-- 'released' (pending again, attempt not spent) | 'cancelled' (a cancel was requested: ended) |
-- 'lost' (not this lease's job).
create function audio_queue.release_job_v2(p_job_id uuid, p_lease_id uuid) returns text
language plpgsql set search_path = '' as $$
declare
    v_status text;
begin
    if not audio_queue.release_job(p_job_id, p_lease_id) then
        return 'lost';
    end if;
    select j.status into v_status from audio_queue.jobs j where j.id = p_job_id;
    return case when v_status = 'cancelled' then 'cancelled' else 'released' end;
end;
$$;

-- complete_jobs with complete_job_v2's answers: many successes in one transaction.
create function audio_queue.complete_jobs_v2(
    p_job_ids   uuid[],
    p_lease_ids uuid[],
    p_results   jsonb[]
) returns text[]
language plpgsql set search_path = '' as $$
declare
    v_n   integer := coalesce(cardinality(p_job_ids), 0);
    v_out text[] := array_fill('lost'::text, array[v_n]);
    v_i   integer;
begin
    if v_n <> coalesce(cardinality(p_lease_ids), 0) or v_n <> coalesce(cardinality(p_results), 0) then
        raise exception 'complete_jobs_v2: p_job_ids, p_lease_ids and p_results must have the same length'
            using errcode = '22023';
    end if;
    -- In id order, so concurrent batches never wait on each other in a cycle.
    for v_i in select ord from unnest(p_job_ids) with ordinality as t(id, ord) order by id loop
        v_out[v_i] := audio_queue.complete_job_v2(p_job_ids[v_i], p_results[v_i], null, p_lease_ids[v_i]);
    end loop;
    return v_out;
end;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (13, '0013_outcome_reasons')
on conflict (version) do nothing;
