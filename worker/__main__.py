import signal
import sys

if sys.argv[1:2] == ["run"]:
    # Until the claim loop installs its own handlers (after imports and the start-up checks), a
    # SIGTERM/SIGINT means: stop now and exit 0; nothing has been claimed yet.
    def _stop_before_start(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop_before_start)
    signal.signal(signal.SIGINT, _stop_before_start)

from worker.cli import main  # noqa: E402

raise SystemExit(main())
