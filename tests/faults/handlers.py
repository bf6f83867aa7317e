"""The pipeline for fault tests (JOB_HANDLER=tests.faults.handlers:render_job).

It is ``worker.job.pipeline`` unchanged (same ``prepare`` and ``sweep`` hooks), except that with
``FAULT_PREVIEW_PAUSE_S`` set the preview upload waits that long before it starts, so a test can
kill the worker at the worst moment: the master stored, the preview not yet, the job not completed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from worker.job.pipeline import prepare, render_job, sweep
from worker.storage.client import Storage

__all__ = ["prepare", "render_job", "sweep"]

_PAUSE_S = float(os.environ.get("FAULT_PREVIEW_PAUSE_S") or 0)

if _PAUSE_S:
    _real_upload = Storage.upload_file

    def _paused_upload(self: Storage, path: Path, **kw: Any) -> Any:
        if Path(path).suffix == ".mp3":
            time.sleep(_PAUSE_S)
        return _real_upload(self, path, **kw)

    Storage.upload_file = _paused_upload  # type: ignore[method-assign]
