"""The pipeline for fault tests (JOB_HANDLER=tests.faults.handlers:render_job).

It is ``worker.job.pipeline`` unchanged (same ``prepare`` and ``sweep`` hooks), except that with
``FAULT_PREVIEW_PAUSE_S`` set the preview upload waits that long before it starts, so a test can
kill the worker at the worst moment: the master stored, the preview not yet, the job not completed.
With ``FAULT_PART_PAUSE_S`` set, each multipart part upload waits that long once it is sent, so a
test can kill the worker mid-upload: the upload created, a part stored, never completed.
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
_PART_PAUSE_S = float(os.environ.get("FAULT_PART_PAUSE_S") or 0)

if _PAUSE_S:
    _real_upload = Storage.upload_file

    def _paused_upload(self: Storage, path: Path, **kw: Any) -> Any:
        if Path(path).suffix == ".mp3":
            time.sleep(_PAUSE_S)
        return _real_upload(self, path, **kw)

    Storage.upload_file = _paused_upload  # type: ignore[method-assign]

if _PART_PAUSE_S:
    _real_init = Storage.__init__

    def _init_with_part_pause(self: Storage, *args: Any, **kw: Any) -> None:
        _real_init(self, *args, **kw)
        self._s3.meta.events.register("after-call.s3.UploadPart", lambda **_: time.sleep(_PART_PAUSE_S))

    Storage.__init__ = _init_with_part_pause  # type: ignore[method-assign]
