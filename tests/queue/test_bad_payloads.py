"""One hostile payload fails alone: nested ~1000 levels deep or holding an integer of 4300+ digits,
it used to make the decoding of the whole claimed batch raise after the claim committed, so every
job claimed with it was dropped, rescued and dropped again until all failed naming no field."""

from __future__ import annotations

import pytest

from tests.support.workers import WorkerFleet, wait_until
from worker.commands import enqueue, render
from worker.errors import PayloadError
from worker.queue.payload import MAX_DEPTH, decode_payload

DEEP = '{"spec_version":1,"duration_s":5,"layers":' + "[" * 1000 + "]" * 1000 + "}"
HUGE = '{"sleep_ms": 10, "layers": [{"type": "noise", "gain_db": ' + "9" * 4400 + "}]}"


@pytest.fixture
def fleet(db_url, tmp_path):
    f = WorkerFleet(db_url, tmp_path)
    yield f
    f.close()


def test_each_claimed_payload_is_judged_alone(conn, fleet):
    # The reproduction: inserted directly, as an app or a DBA could.
    conn.execute(
        'insert into audio_queue.jobs(payload) select (\'{"spec_version":1,"duration_s":5,"layers":\''
        "||repeat('[',1000)||repeat(']',1000)||'}')::jsonb"
    )
    conn.execute("insert into audio_queue.jobs(payload) values (%s::jsonb)", (HUGE,))
    conn.execute("""insert into audio_queue.jobs(payload) values ('{"sleep_ms": 10}')""")
    w = fleet.start(MAX_CONCURRENT_JOBS=3)  # all three claimed in one batch

    def ended():  # read as text: the test's own psycopg cannot decode the deep payload either
        rows = conn.execute(
            "select status, error_message, attempts, rescue_count, left(payload::text, 30)"
            " from audio_queue.jobs order by status, error_message"
        ).fetchall()
        return all(r[0] in ("completed", "failed") for r in rows) and rows

    rows = wait_until(ended, timeout=20, what="every job to end")
    assert rows == [
        ("completed", None, 1, 0, '{"sleep_ms": 10}'),
        ("failed", "invalid payload: layers: nested more than 100 levels deep", 1, 0, rows[1][4]),
        (
            "failed",
            "invalid payload: layers[0].gain_db: an integer of 4400 digits (at most 4300)",
            1,
            0,
            rows[2][4],
        ),
    ]
    assert "claim failed" not in w.log and w.proc.poll() is None


def test_decoding_limits_name_the_field():
    with pytest.raises(PayloadError, match="layers: nested more than 100 levels deep"):
        decode_payload(DEEP)
    nested_ok = '{"a": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + ', "s": "[[[[{{{{"}'
    assert decode_payload(nested_ok)["s"] == "[[[[{{{{"
    with pytest.raises(PayloadError, match=r"must be a JSON object"):
        decode_payload("[1, 2]")
    assert decode_payload('{"n": -' + "1" * 4300 + "}")["n"] < 0


@pytest.mark.parametrize("command", [enqueue, render])
@pytest.mark.parametrize(("text", "says"), [(DEEP, "nested more than 100"), (HUGE, "4400 digits")])
def test_commands_print_one_line_for_such_files(command, text, says, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(text)
    argv = [str(spec)] if command is enqueue else [str(spec), "--out", str(tmp_path / "out")]
    assert command.main(argv) != 0  # before connecting to any database
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
