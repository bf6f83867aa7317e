-- 0020: the jobs list's status filter treats 'queued' as what 0001 made it, an alias of 'pending':
-- dashboard_jobs(p_status => 'pending') and (p_status => 'queued') both return the jobs of either
-- status (before, 'pending' hid the rows an app inserted as 'queued'). Each status is read in
-- order from jobs_status_created_idx with the page's limit, and the two short lists are merged, so
-- a page costs what it did however long the backlog. Same signature and columns as 0010.

create or replace function audio_queue.dashboard_jobs(
    p_status        text        default null,
    p_user_id       uuid        default null,
    p_track_id      uuid        default null,
    p_created_from  timestamptz default null,
    p_created_to    timestamptz default null,
    p_error         text        default null,
    p_after_created timestamptz default null,
    p_after_id      uuid        default null,
    p_limit         integer     default 50
)
returns table (
    id uuid, status text, created_at timestamptz, completed_at timestamptz, attempts integer,
    max_attempts integer, progress integer, stage text, track_id uuid, user_id uuid, error text
)
language plpgsql stable set search_path = '' as $$
declare
    v_where   text := 'true';
    v_pattern text;
    v_page    text := ' order by j.created_at desc, j.id desc limit '
                      || least(greatest(coalesce(p_limit, 50), 1), 500);
    v_select  constant text :=
        'select j.id, j.status, j.created_at, j.completed_at, j.attempts, j.max_attempts, j.progress,
                j.stage, j.track_id, j.user_id, coalesce(j.error_message, j.last_error) as error
           from audio_queue.jobs j
          where ';
begin
    -- Built from fixed fragments only; values are passed as parameters ($1..$8), so each call gets
    -- a plan for the filters it has (the right index) and nothing a user typed becomes SQL.
    if p_user_id is not null then
        v_where := v_where || ' and j.user_id = $2';
    end if;
    if p_track_id is not null then
        v_where := v_where || ' and j.track_id = $3';
    end if;
    if p_created_from is not null then
        v_where := v_where || ' and j.created_at >= $4';
    end if;
    if p_created_to is not null then
        v_where := v_where || ' and j.created_at < $5';
    end if;
    if nullif(p_error, '') is not null then
        v_pattern := '%' || replace(replace(replace(p_error, '\', '\\'), '%', '\%'), '_', '\_') || '%';
        v_where := v_where || ' and (j.error_message ilike $6 or j.last_error ilike $6)';
    end if;
    if p_after_created is not null and p_after_id is not null then
        v_where := v_where || ' and (j.created_at, j.id) < ($7, $8)';
    end if;
    if p_status in ('pending', 'queued') then
        return query execute
            'select * from ((' || v_select || 'j.status = ''pending'' and ' || v_where || v_page || ')
                 union all (' || v_select || 'j.status = ''queued'' and ' || v_where || v_page || ')) w
              order by w.created_at desc, w.id desc limit '
            || least(greatest(coalesce(p_limit, 50), 1), 500)
            using p_status, p_user_id, p_track_id, p_created_from, p_created_to, v_pattern,
                  p_after_created, p_after_id;
        return;
    end if;
    if p_status is not null then
        v_where := v_where || ' and j.status = $1';
    end if;
    return query execute v_select || v_where || v_page
        using p_status, p_user_id, p_track_id, p_created_from, p_created_to, v_pattern,
              p_after_created, p_after_id;
end;
$$;

call audio_queue.apply_privileges();

insert into audio_queue.schema_migrations (version, name) values (20, '0020_dashboard_pending_includes_queued')
on conflict (version) do nothing;
