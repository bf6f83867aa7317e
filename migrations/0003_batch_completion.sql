-- 0003: complete many successful jobs in one call (one transaction, one commit).
-- The worker sends the completions of jobs that finish while a previous batch is in flight
-- together, so a busy worker pays one commit per batch instead of one per job. Each element is
-- exactly complete_job(id, result, null, lease_id): same fencing, same idempotent repeats.

create function audio_queue.complete_jobs(
    p_job_ids   uuid[],
    p_lease_ids uuid[],
    p_results   jsonb[]
) returns boolean[]
language plpgsql set search_path = '' as $$
declare
    v_n   integer := coalesce(cardinality(p_job_ids), 0);
    v_out boolean[] := array_fill(false, array[v_n]);
    v_i   integer;
begin
    if v_n <> coalesce(cardinality(p_lease_ids), 0) or v_n <> coalesce(cardinality(p_results), 0) then
        raise exception 'complete_jobs: p_job_ids, p_lease_ids and p_results must have the same length'
            using errcode = '22023';
    end if;
    -- In id order, so concurrent batches never wait on each other in a cycle.
    for v_i in select ord from unnest(p_job_ids) with ordinality as t(id, ord) order by id loop
        v_out[v_i] := audio_queue.complete_job(p_job_ids[v_i], p_results[v_i], null, p_lease_ids[v_i]);
    end loop;
    return v_out;
end;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (3, '0003_batch_completion')
on conflict (version) do nothing;
