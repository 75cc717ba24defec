"""The results of an archive run: one Parquet dataset, written a part file at a time.

::

    RESULTS/
        part-20261128T080102-1a2b3c4d-00000.parquet   one file per commit, never rewritten
        part-20261128T080102-1a2b3c4d-00001.parquet
        .lock                                         held by the run that is writing

A part file is written under a hidden temporary name, fsynced and renamed into place, so every
``part-*.parquet`` is complete: a run killed at any point leaves only whole files (and perhaps a
hidden temporary one, removed by the next run). Any Parquet reader (pyarrow, pandas, DuckDB, Spark)
reads the folder as one table; hidden files are ignored by all of them.

A photo's result is identified by :data:`KEY`: the same file (path, size, modification time),
captioned by the same model (its bundle's sha256) with the same beam. A rerun skips photos whose key
is already stored, so a changed photo or a new model is captioned again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.bundle import CONFIG_FILE, VOCAB_FILE

log = logging.getLogger(__name__)

KEY = ("path", "size", "mtime_ns", "model_sha", "beam")

_ALTERNATIVE = pa.struct([("caption", pa.string()), ("score", pa.float64())])
_TAG = pa.struct([("word", pa.string()), ("probability", pa.float32()), ("cam", pa.list_(pa.float32()))])

SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("model_sha", pa.string(), nullable=False),
        pa.field("beam", pa.int32(), nullable=False),
        pa.field("caption", pa.string()),  # null when the photo failed
        pa.field("score", pa.float64()),  # length-normalised log-probability
        pa.field("alternatives", pa.list_(_ALTERNATIVE)),  # the beam's n-best, best first
        pa.field("tags", pa.list_(_TAG)),  # most probable first; cam (grid_h*grid_w) with --attention
        pa.field("keywords", pa.list_(pa.string())),
        pa.field("tagged", pa.bool_()),  # whether the model tags at all (CaptionResult.tagged); null: older parts
        pa.field("attention", pa.list_(pa.float32())),  # with --attention: (words, grid_h, grid_w) flattened
        pa.field("attention_shape", pa.list_(pa.int32())),
        pa.field("error", pa.string()),  # why the photo failed; null when captioned
        pa.field("attempts", pa.int32()),  # 1, or 2 when a failure was retried
        pa.field("sidecar", pa.string()),  # with --write-sidecars: the sidecar's path
        pa.field("sidecar_status", pa.string()),  # written, kept_human or failed
        pa.field("sidecar_message", pa.string()),
        pa.field("captioned_at", pa.string()),  # ISO 8601, UTC
        pa.field("host", pa.string()),  # the node that captioned it
    ]
)

def failure_rows(inputs: pa.Table, errors: list[str], *, model: str, model_sha: str, beam: int, attempts: int,
                 host: str) -> pa.Table:
    """Rows of :data:`SCHEMA` saying each photo of ``inputs`` (its ``id``, ``path``, ``size`` and
    ``mtime_ns`` columns, kept as they are) failed with its error, with the call's timing columns the
    driver counts by (now)."""
    now = time.time()
    n = inputs.num_rows
    captioned_at = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
    values = {"model": [model] * n, "model_sha": [model_sha] * n, "beam": [beam] * n, "error": errors,
              "attempts": [attempts] * n, "captioned_at": [captioned_at] * n, "host": [host] * n}
    own = [f for f in SCHEMA if f.name not in inputs.column_names]
    table = pa.table({f.name: values.get(f.name, [None] * n) for f in own}, schema=pa.schema(own))
    for name in inputs.column_names:
        table = table.append_column(name, inputs[name])
    table = table.append_column("_call_started", pa.array([now] * n, pa.float64()))
    return table.append_column("_call_finished", pa.array([now] * n, pa.float64()))


PART_GLOB = "part-*.parquet"
_LOCK_NAME = ".lock"
_TEMP_PREFIX = ".part-"


class ResultsError(Exception):
    """The results folder cannot be used (a damaged part file, another run writing, not a folder)."""


def bundle_sha(bundle_path: str | Path) -> str:
    """The sha256 identifying a model bundle: its config (which holds the weights' sha256) and vocabulary."""
    bundle_path = Path(bundle_path)
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, VOCAB_FILE):
        digest.update(name.encode() + b"\0")
        digest.update((bundle_path / name).read_bytes())
    return digest.hexdigest()


#: Columns of :data:`SCHEMA` that part files written by an older imgcap do not have.
_ADDED_SINCE = ("tagged",)


def part_files(folder: str | Path) -> list[Path]:
    """The complete part files, oldest first (their names start with the run's start time)."""
    folder = Path(folder)
    return sorted(folder.glob(PART_GLOB)) if folder.is_dir() else []


def read_results(folder: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Every stored row, in the order written (an empty table with :data:`SCHEMA` where there is none).

    Raises:
        ResultsError: a part file cannot be read; its name is in the message.
    """
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
    tables = []
    for part in part_files(folder):
        try:
            stored = pq.read_schema(part).names
            table = pq.read_table(part, columns=[c for c in schema.names if c in stored])
            for name in _ADDED_SINCE:  # a part an older imgcap wrote: null there
                if name in schema.names and name not in table.column_names:
                    table = table.append_column(schema.field(name), pa.nulls(table.num_rows, schema.field(name).type))
            # A column missing or of another type (not a results part, or a damaged one): unreadable too.
            tables.append(table.select(schema.names).cast(schema))
        except (OSError, pa.ArrowException, KeyError, UnicodeDecodeError) as exc:
            raise ResultsError(
                f"{part}: unreadable ({exc}); move it out of the folder and its photos are captioned again"
            ) from None
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def latest_results(folder: str | Path, columns: list[str] | None = None) -> pa.Table:
    """One row per :data:`KEY`, the one written last (a photo retried with ``--retry-failed``)."""
    if columns is not None:
        columns = list(dict.fromkeys([*KEY, *columns]))
    return latest_rows(read_results(folder, columns))


def latest_rows(table: pa.Table) -> pa.Table:
    """Keep the last row of each :data:`KEY` in ``table``, in the order written."""
    if table.num_rows == 0:
        return table
    numbered = table.select(list(KEY)).append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    last = numbered.group_by(list(KEY), use_threads=False).aggregate([("_row", "max")])["_row_max"]
    return table.take(last.take(pc.sort_indices(last)))  # the row numbers themselves, ascending


class ResultsWriter:
    """Appends rows to a results folder, one atomic part file per commit; held by one run at a time.

    Rows are kept in memory until ``commit_rows`` are pending or ``commit_seconds`` have passed since
    the last commit, then written together. Use as a context manager: leaving it commits what is
    pending (also on an exception or Ctrl+C) and releases the lock.

    Raises:
        ResultsError: another run holds the folder, or it cannot be created.
    """

    def __init__(self, folder: str | Path, *, commit_rows: int = 1000, commit_seconds: float = 60.0):
        self.folder = Path(folder)
        self.commit_rows = commit_rows
        self.commit_seconds = commit_seconds
        self.rows_written = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._last_commit = time.monotonic()
        self._run = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
        self._sequence = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"{self.folder}: cannot create the results folder ({exc.strerror or exc})") from None
        self._lock = _lock(self.folder / _LOCK_NAME)
        for stale in self.folder.glob(_TEMP_PREFIX + "*"):  # left by a run that was killed mid-write
            try:
                stale.unlink(missing_ok=True)
            except OSError as exc:  # another user's, in a shared (sticky) folder: theirs to remove
                log.info("cannot remove %s, left by a run that was killed: %s", stale, exc.strerror or exc)

    def add(self, table: pa.Table) -> None:
        """Queue rows (with :data:`SCHEMA`'s columns) and commit if enough are pending."""
        if table.num_rows == 0:
            return
        self._pending.append(table.select(SCHEMA.names).cast(SCHEMA))
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.commit_rows or time.monotonic() - self._last_commit >= self.commit_seconds:
            self.commit()

    def commit(self) -> Path | None:
        """Write the pending rows as one part file; returns it (None when nothing was pending)."""
        self._last_commit = time.monotonic()
        if not self._pending:
            return None
        table = pa.concat_tables(self._pending)
        name = f"part-{self._run}-{self._sequence:05d}.parquet"
        temporary = self.folder / f"{_TEMP_PREFIX}{self._run}-{self._sequence:05d}.tmp"
        try:
            pq.write_table(table, temporary, compression="zstd")
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, self.folder / name)
            _fsync_folder(self.folder)
        except OSError as exc:  # a full disk, storage gone read-only: said, not a traceback
            with contextlib.suppress(OSError):  # on storage gone read-only this fails too
                temporary.unlink(missing_ok=True)
            raise ResultsError(f"{self.folder}: cannot write results ({exc.strerror or exc}); the "
                               f"{self.rows_written} rows committed before are kept: make room and run "
                               f"again to go on") from None
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self._pending.clear()
        self._pending_rows = 0
        self._sequence += 1
        self.rows_written += table.num_rows
        return self.folder / name

    def close(self) -> None:
        try:
            self.commit()
        finally:
            if self._lock is not None:
                self._lock.close()  # closing the file releases the lock
                self._lock = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _lock(path: Path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: one run at a time is the user's business
        return None
    try:
        handle = open(path, "a+")
    except PermissionError as exc:  # another user's lock file in a shared folder: flock needs no write access
        refused = ResultsError(f"{path.parent}: cannot write results there ({exc.strerror or exc})")
        try:
            handle = open(path)
        except OSError:
            raise refused from None
        try:
            tempfile.TemporaryFile(dir=path.parent).close()  # the folder itself takes files
        except OSError:
            handle.close()
            raise refused from None
    except OSError as exc:  # read-only storage: say so before any photo is captioned
        raise ResultsError(f"{path.parent}: cannot write results there ({exc.strerror or exc})") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            raise ResultsError(f"{path.parent}: another archive run is writing these results") from None
        # NFS locks by write access: another user's lock file opened read-only cannot be locked.
        raise ResultsError(f"{path.parent}: cannot lock {path.name} ({exc.strerror or exc}); if another user's run "
                           f"made it and none is running, remove it") from None
    return handle


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse to sync folders
        pass
    finally:
        os.close(fd)
