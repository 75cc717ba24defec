"""Workers for the archive tests that misbehave on purpose; importable by Ray's worker processes."""

from __future__ import annotations

import os
from pathlib import Path

from imgcap_desktop.archive.worker import CaptionWorker

CRASH_MARKER = ".worker-crashed"


class CrashOnceWorker(CaptionWorker):
    """The first batch of the run kills its actor's process (as the OOM killer or a lost node would).

    The marker file beside the first photo makes it happen once per run, whichever actor gets there.
    """

    def __call__(self, batch):
        marker = Path(batch["path"][0].as_py()).parent / CRASH_MARKER
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().__call__(batch)
        os._exit(1)


class CrashMidTaskWorker(CaptionWorker):
    """Dies in its second call, once per run: after the first call's rows of the same Ray task have
    already been sent on (a task here is a block of two calls), so Ray runs the whole task again."""

    calls = 0

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 2:
            marker = Path(batch["path"][0].as_py()).parent / CRASH_MARKER
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return super().__call__(batch)


class MismatchedWorker(CaptionWorker):
    """A node whose install differs from the driver's: the actor refuses to start."""

    def __init__(self, **kwargs):
        from imgcap_desktop.archive.worker import ModelMismatchError

        raise ModelMismatchError("node-7: bundle /opt/imgcap/model has sha 0123456789ab, the driver planned "
                                 "with abcdef")


class PoisonWorker(CaptionWorker):
    """Dies whenever its batch holds a photo named ``poison*``: a photo whose decoding crashes the
    process (a decoder's segfault, the OOM killer on one huge photo) every time it is tried."""

    def __call__(self, batch):
        if any(Path(p).name.startswith("poison") for p in batch["path"].to_pylist()):
            os._exit(1)
        return super().__call__(batch)


class RaisingWorker(CaptionWorker):
    """A bug in the worker's own code (not the engine's): raises on a batch holding a photo named
    ``bug*``."""

    def caption_with_retry(self, paths):
        if any(Path(p).name.startswith("bug") for p in paths):
            raise KeyError("a bug in the worker")
        return super().caption_with_retry(paths)
