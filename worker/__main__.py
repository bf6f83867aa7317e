import os
import signal
import sys

if sys.argv[1:2] == ["run"]:
    # Until the claim loop installs its own handlers (after imports and the start-up checks, and
    # before it opens a connection), a SIGTERM/SIGINT means: nothing is claimed, exit 0 now.
    # os._exit, not an exception: an exception raised at an arbitrary point (inside a library's
    # import) can be caught and turned into a crash.
    def _stop_before_start(signum: int, frame: object) -> None:
        os._exit(0)

    signal.signal(signal.SIGTERM, _stop_before_start)
    signal.signal(signal.SIGINT, _stop_before_start)

from worker.cli import main

raise SystemExit(main())
