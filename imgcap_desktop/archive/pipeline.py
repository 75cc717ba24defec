"""``imgcap archive caption`` on the driver: plan the run, hand the photos to Ray Data, store the results.

The same code runs on a laptop (no ``--address``: a local Ray instance with this machine's CPUs and
GPUs) and on a cluster started with ``ray start`` (``--address auto`` on a node of it, or
``HOST:PORT``). The photos are listed and stat'ed here; those whose result is already stored are
dropped; the rest become Ray Data blocks that a fixed pool of actors (:class:`CaptionWorker`, each
holding one loaded model) turns into result rows, which stream back here and are committed to the
results folder a part file at a time. Ray restarts a killed actor and runs its batch again; rows
reach the results only through this driver, which drops any row it has already stored in the run,
so nothing is recorded twice.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from imgcap_desktop.archive.inputs import Inputs, collect_inputs
from imgcap_desktop.archive.results import (
    KEY,
    ResultsError,
    ResultsWriter,
    bundle_sha,
    failure_rows,
    latest_results,
)
from imgcap_desktop.archive.worker import CaptionWorker
from imgcap_desktop.metadata.apply import StoreOptions
from imgcap_desktop.metadata.printable import printable

log = logging.getLogger(__name__)

# Ray batches hold this many model batches, so that the next photos load while the model runs.
BATCHES_PER_CALL = 4
#: Times a Ray task is run again after its actor died in it (the actor itself is always restarted).
#: A photo that kills its worker every time fails after these, alone: see ``_caption``.
TASK_RETRIES = 2


class ArchiveError(RuntimeError):
    """The run cannot go on (a worker that cannot start, a cluster that went away); what was stored stays."""


@dataclass
class ArchiveOptions:
    """Everything ``imgcap archive caption`` was asked for.

    Attributes:
        roots: folders (scanned recursively), photos, or text files listing paths.
        out: the results folder (created when missing).
        address: a Ray cluster (``"auto"`` or ``HOST:PORT``); None starts a local Ray instance,
            or uses the one this process already started.
        workers: actors in the pool; by default one per ``cpus_per_worker`` CPUs (or per
            ``gpus_per_worker`` GPUs) of the cluster.
        gpus_per_worker: GPUs per actor (0.25: four actors share a GPU); 0 captions on CPUs.
        cpus_per_worker: CPUs per actor, also its threads per operation; by default the cluster's CPUs
            divided among ``workers`` on CPUs, or 1 with GPUs.
        batch_size: photos per model batch.
        beam: beam size.
        bundle: a model bundle on storage every node sees; None for the shipped model.
        runtime: ``"auto"``, ``"onnx"`` or ``"tf"``, as for ``imgcap caption``.
        store: sidecar options when the workers should write sidecars as they go, else None.
        attention: store the attention maps too.
        retry_failed: caption again photos whose stored result is a failure.
        commit_rows / commit_seconds: when a part file is committed.
    """

    roots: list[Path]
    out: Path
    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None
    batch_size: int = 8
    beam: int = 3
    bundle: Path | None = None
    runtime: str = "auto"
    store: StoreOptions | None = None
    attention: bool = False
    retry_failed: bool = False
    commit_rows: int = 1000
    commit_seconds: float = 60.0


@dataclass
class ArchiveReport:
    """What a run did. ``failed`` counts photos that failed in this run; ``problems`` are paths
    that could not be listed or stat'ed."""

    found: int = 0
    skipped: int = 0
    skipped_failed: int = 0
    captioned: int = 0
    failed: int = 0
    sidecars_failed: int = 0  # captioned, but the sidecar could not be written (--write-sidecars)
    duplicates_dropped: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    interrupted: bool = False
    work_started: float | None = None  # time.time() when the first worker call began
    work_finished: float | None = None  # ... and when the last one ended

    @property
    def ok(self) -> bool:
        """Every photo captioned: none failed in this run nor in an earlier one not tried again (a
        run resumed after an interruption says what the whole job came to, as one run would)."""
        return (not self.failed and not self.skipped_failed and not self.sidecars_failed and not self.problems
                and not self.interrupted)

    @property
    def steady_rate(self) -> float | None:
        """Photos/s from the first worker call's start to the last one's end (start-up left out)."""
        done = self.captioned + self.failed
        if self.work_started is None or self.work_finished is None or self.work_finished <= self.work_started:
            return None
        return done / (self.work_finished - self.work_started)


def plan(inputs: Inputs, out: Path, model_sha: str, beam: int, retry_failed: bool) -> tuple[pa.Table, int, int]:
    """The photos still to caption: ``(table of id, path, size, mtime_ns; skipped; skipped failures)``.

    A photo is skipped when a result with its :data:`KEY` is stored; a stored failure too, unless
    ``retry_failed``.
    """
    wanted = pa.table({
        "id": pa.array(range(len(inputs)), pa.int64()),
        "path": pa.array(inputs.paths, pa.string()),
        "size": pa.array(inputs.sizes, pa.int64()),
        "mtime_ns": pa.array(inputs.mtimes, pa.int64()),
    })
    done = latest_results(out, columns=["error"])
    done = done.filter(pc.and_(pc.equal(done["model_sha"], model_sha), pc.equal(done["beam"], beam)))
    failed_before = done.filter(pc.is_valid(done["error"]))
    if retry_failed:
        done = done.filter(pc.is_null(done["error"]))
    keys = list(KEY)
    keyed = wanted.append_column("model_sha", pa.array([model_sha] * len(inputs), pa.string())) \
                  .append_column("beam", pa.array([beam] * len(inputs), pa.int32()))
    todo = keyed.join(done.select(keys), keys=keys, join_type="left anti", use_threads=False)
    todo = todo.sort_by("id").select(["id", "path", "size", "mtime_ns"])
    skipped_failed = 0
    if not retry_failed and failed_before.num_rows:
        skipped_failed = keyed.join(failed_before.select(keys), keys=keys, join_type="left semi").num_rows
    return todo, len(inputs) - todo.num_rows, skipped_failed


def run_archive(options: ArchiveOptions, *, err: TextIO | None = None,
                worker_cls: type = CaptionWorker) -> ArchiveReport:
    """Caption the archive; results land in ``options.out``. Progress goes to ``err`` (stderr).

    Raises:
        ResultsError: the results folder is unusable (another run holds it, a damaged part file).
        model.bundle.BundleError: the bundle cannot be loaded.
        ArchiveError: the workers stopped (one cannot start, the cluster went away); the results
            that came back before are stored.
        ConnectionError: no Ray cluster at ``options.address``.
    """
    from model.bundle import default_bundle_path, load_bundle

    err = err or sys.stderr
    started = time.monotonic()
    report = ArchiveReport()
    bundle_path = Path(options.bundle) if options.bundle is not None else default_bundle_path()
    bundle = load_bundle(bundle_path)  # checks it before any worker starts; no TensorFlow here
    model_sha = bundle_sha(bundle_path)

    inputs = collect_inputs(options.roots)
    report.found, report.problems = len(inputs), inputs.problems
    if inputs.left_out:
        kinds = " ".join(sorted({"dot files" if Path(path).name.startswith(".") else Path(path).suffix.lower()
                                 for path in inputs.left_out}))
        print(f"imgcap archive: left out {len(inputs.left_out)} files that are no photos ({printable(kinds)}): "
              f"{printable(inputs.left_out[0])}{' …' if len(inputs.left_out) > 1 else ''}", file=err)
    # SIGTERM outside the captioning (Ray shutting down, the last rows being committed) is acted on
    # once the results are committed; during it, it stops the run as Ctrl-C does (_caption).
    with _terminate_noted() as terminated:
        with ResultsWriter(options.out, commit_rows=options.commit_rows,
                           commit_seconds=options.commit_seconds) as writer:
            todo, report.skipped, report.skipped_failed = plan(inputs, options.out, model_sha, options.beam,
                                                               options.retry_failed)
            if report.skipped:
                note = ""
                if report.skipped_failed:
                    note = f" ({report.skipped_failed} of them failed; --retry-failed tries them again)"
                print(f"imgcap archive: {report.skipped} of {report.found} photos already have results{note}",
                      file=err)
            if todo.num_rows and not terminated:  # a SIGTERM while the results were read: no run
                try:
                    _caption(options, bundle.name, model_sha, todo, writer, report, err, worker_cls)
                except KeyboardInterrupt:
                    report.interrupted = True
    if report.interrupted or terminated:
        report.interrupted = True
        print("imgcap archive: interrupted; run the same command again to go on", file=err)
    report.seconds = time.monotonic() - started
    return report


def _caption(options: ArchiveOptions, model_name: str, model_sha: str, todo: pa.Table, writer: ResultsWriter,
             report: ArchiveReport, err: TextIO, worker_cls: type) -> None:
    import ray

    owned = not ray.is_initialized()  # started here: shut down here
    stack = contextlib.ExitStack()
    stack.enter_context(_terminate_as_interrupt())  # SIGTERM while Ray starts stops the run too
    try:
        try:
            _init_ray(options.address)
        except SystemExit as exc:  # Ray's own SIGTERM handler, set while it starts, exits with 15
            if exc.code != signal.SIGTERM:
                raise
            raise KeyboardInterrupt from None
        with contextlib.suppress(ValueError):  # Ray's start set its own handler: ours again (main thread only)
            signal.signal(signal.SIGTERM, _interrupt)
        workers, cpus, gpus = _pool_size(options, ray.cluster_resources())
        call_rows = options.batch_size * BATCHES_PER_CALL
        block_rows = _block_rows(todo.num_rows, workers, options.batch_size, call_rows)
        # Ray hands an actor at least a call's rows at a time: no more actors than that makes work for.
        workers = max(1, min(workers, math.ceil(todo.num_rows / max(block_rows, call_rows))))
        print(f"imgcap archive: {todo.num_rows} photos to caption with {model_name} on {workers} "
              f"worker{'s' if workers != 1 else ''} "
              f"({cpus:g} CPU{'s' if cpus != 1 else ''}{f', {gpus:g} GPU' if gpus else ''} each)", file=err)
        stored = bytearray(int(pc.max(todo["id"]).as_py()) + 1)  # ids already stored in this run
        with _Progress(todo.num_rows, err) as progress:
            dataset = _dataset(todo, options, workers, model_sha, cpus, gpus, worker_cls, block_rows, call_rows)
            _store_all(dataset, writer, stored, report, progress)
            # A block whose task killed its actor every time came back as nothing: its photos again, one a
            # task, so that only a photo that kills its worker (a decoder's crash, the OOM killer) is left.
            left = _not_stored(todo, stored)
            if left.num_rows:
                print(f"imgcap archive: a worker died on each try at a batch of {left.num_rows} "
                      f"photo{'s' if left.num_rows != 1 else ''}; trying them one at a time", file=err)
                dataset = _dataset(left, options, min(workers, left.num_rows), model_sha, cpus, gpus, worker_cls, 1, 1)
                _store_all(dataset, writer, stored, report, progress)
                left = _not_stored(todo, stored)
                if left.num_rows:
                    table = _crash_rows(left, model_name, model_sha, options.beam)
                    _new_rows(table, stored, report)
                    writer.add(table)
                    _count(table, report, progress)
    finally:
        stack.close()  # SIGTERM from here on is noted (run_archive): Ray is shut down, the rows committed
        if owned and ray.is_initialized():
            # Shutting down, Ray's core sets SIGTERM back to the system's default (the process dies at
            # once): the rows that came back are committed first, and the handler is set again after.
            try:
                with contextlib.suppress(OSError, ResultsError):  # the writer's close says why, once more
                    writer.commit()
            finally:
                ray.shutdown()
                with contextlib.suppress(ValueError):  # not the main thread: nothing was set
                    signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGTERM))


def _store_all(dataset, writer: ResultsWriter, stored: bytearray, report: ArchiveReport, progress: _Progress) -> None:
    """Store the rows the workers send back, as they come."""
    import ray

    try:
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            table = _new_rows(table, stored, report)
            if table.num_rows:
                writer.add(table)
                _count(table, report, progress)
    except ray.exceptions.RayError as exc:  # the cause is the last line of Ray's message
        cause = next((line for line in reversed(str(exc).splitlines()) if line.strip()), type(exc).__name__)
        raise ArchiveError(f"the workers stopped: {cause.strip()}") from None


def _not_stored(todo: pa.Table, stored: bytearray) -> pa.Table:
    """The rows of ``todo`` whose photos no result came back for."""
    return todo.filter(pa.array(np.frombuffer(stored, np.uint8)[todo["id"].to_numpy()] == 0))


def _crash_rows(left: pa.Table, model_name: str, model_sha: str, beam: int) -> pa.Table:
    """Failure rows for photos that no result came back for, each tried alone (its worker died)."""
    errors = [f"{Path(path).name}: no result came back for it ({TASK_RETRIES + 1} tries, alone: its worker "
              "died each time, a crash in decoding or out of memory); left out" for path in left["path"].to_pylist()]
    return failure_rows(left, errors, model=model_name, model_sha=model_sha, beam=beam, attempts=TASK_RETRIES + 1,
                        host=socket.gethostname())


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (what a job scheduler sends at the end of a slot) stops the run as Ctrl-C does: the
    rows that came back are committed and the summary says how to go on. Only the main thread can
    set a handler; elsewhere nothing changes."""
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminate_noted():
    """SIGTERM during the block is noted (the list yielded is not empty then), not acted on: the
    caller stops once the work under way (Ray shutting down, rows being committed) is done."""
    received: list[int] = []
    try:
        previous = signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    except ValueError:  # not the main thread
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _new_rows(table: pa.Table, stored: bytearray, report: ArchiveReport) -> pa.Table:
    """The rows of photos not stored yet in this run (a batch that Ray ran twice comes back twice)."""
    ids = table["id"].to_numpy()
    fresh = [i for i, photo in enumerate(ids) if not stored[photo]]
    if len(fresh) < len(ids):
        report.duplicates_dropped += len(ids) - len(fresh)
        table = table.take(pa.array(fresh, pa.int64()))
    for photo in table["id"].to_numpy():
        stored[photo] = 1
    return table


def _count(table: pa.Table, report: ArchiveReport, progress: _Progress) -> None:
    began, ended = pc.min(table["_call_started"]).as_py(), pc.max(table["_call_finished"]).as_py()
    report.work_started = min(began, report.work_started or began)
    report.work_finished = max(ended, report.work_finished or ended)
    failed = table.num_rows - table["error"].null_count
    if failed:
        failures = table.filter(pc.is_valid(table["error"]))
        for path, message in zip(failures["path"].to_pylist(), failures["error"].to_pylist()):
            progress.note(_where(path, message))
    report.failed += failed
    report.captioned += table.num_rows - failed
    if "sidecar_status" in table.column_names:  # captioned, and the sidecar refused: said, and counted
        refused = table.filter(pc.equal(table["sidecar_status"], "failed"))
        for path, message in zip(refused["path"].to_pylist(), refused["sidecar_message"].to_pylist()):
            progress.note(f"sidecar not written: {_where(path, message or '')}")
        report.sidecars_failed += refused.num_rows
    progress.update(table.num_rows, failed)


def _where(path: str, message: str) -> str:
    """A photo's message with its whole path: in an archive many folders hold an ``IMG_0001.JPG``."""
    return f"{printable(path)}: {printable(message.removeprefix(f'{Path(path).name}: '))}"  # a name's line break too


def _init_ray(address: str | None) -> None:
    """Connect to (or start) Ray, unless this process is connected already."""
    import ray

    if ray.is_initialized():
        return
    _refuse_unreachable(address)
    logging.getLogger("ray").setLevel(logging.WARNING)
    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    # "local": a private Ray instance on this machine, even where `ray start` left one running
    # (RAY_ADDRESS, when set, still wins).
    ray.init(address=address or "local", runtime_env={"env_vars": env}, logging_level=logging.WARNING,
             configure_logging=True, log_to_driver=True)


def _refuse_unreachable(address: str | None, timeout: float = 10.0) -> None:
    """Raise ConnectionError where ``--address HOST:PORT`` names a port nobody answers on: Ray tries
    again for minutes, deaf to Ctrl-C, before it gives up ("auto" and "local" are Ray's to find)."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # Ray's own message says what it makes of it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"no cluster answers at {address} ({exc.strerror or exc})") from None


def _pool_size(options: ArchiveOptions, resources: dict) -> tuple[int, float, float]:
    """``(workers, CPUs per worker, GPUs per worker)`` for this cluster."""
    total_cpus = float(resources.get("CPU", 1))
    gpus = float(options.gpus_per_worker or 0)
    if gpus:
        total_gpus = float(resources.get("GPU", 0))
        if total_gpus < gpus:
            raise ValueError(f"--gpus-per-worker {gpus:g}, but the cluster has {total_gpus:g} GPUs")
        cpus = options.cpus_per_worker or 1.0
        workers = options.workers or max(1, int(total_gpus / gpus + 1e-9))
    elif options.workers:
        workers = options.workers
        cpus = options.cpus_per_worker or max(1.0, math.floor(total_cpus / workers))
    else:
        cpus = options.cpus_per_worker or 1.0
        workers = max(1, int(total_cpus / cpus))
    if cpus > total_cpus:  # Ray would wait for such a node for ever
        raise ValueError(f"--cpus-per-worker {cpus:g}, but the cluster has {total_cpus:g} CPUs")
    return workers, cpus, gpus


def _dataset(todo: pa.Table, options: ArchiveOptions, workers: int, model_sha: str, cpus: float, gpus: float,
             worker_cls: type, block_rows: int, call_rows: int):
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows its own (done, photos/s, ETA, failures)
    # A block whose task killed its actor TASK_RETRIES + 1 times is given up and the rest goes on;
    # the driver sees which photos came back (``_caption``).
    context.max_errored_blocks = -1
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line per dataset started or finished
    logging.getLogger("ray.data._internal.progress").addFilter(_NoProgressBarNotice())
    # from_items builds the blocks here; from_arrow would start a task (a worker process) per block.
    store = options.store
    blocks = ray.data.from_items(todo.to_pylist(), override_num_blocks=math.ceil(todo.num_rows / block_rows))
    with warnings.catch_warnings():
        # Ray 2.60 takes an actor's max_restarts and max_task_retries only as remote args, which it
        # calls deprecated; no named parameter replaces them yet.
        warnings.filterwarnings("ignore", message=".*ray_remote_args. is deprecated")
        return blocks.map_batches(
            worker_cls,
            fn_constructor_kwargs={
                "bundle": str(options.bundle) if options.bundle is not None else None,
                "model_sha": model_sha, "beam": options.beam, "batch_size": options.batch_size,
                "device": "auto" if gpus else "cpu", "runtime": options.runtime, "threads": max(1, int(cpus)),
                "store": store,
                "attention": options.attention,
            },
            batch_size=call_rows,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus,
            num_gpus=gpus or None,
            max_restarts=-1,  # an actor that died (a killed process, a lost node) is started again
            max_task_retries=TASK_RETRIES,  # but a task that kills it every time is not run for ever
        )


def _block_rows(photos: int, workers: int, batch_size: int, call_rows: int) -> int:
    """Rows per Ray block: at least 4 blocks per worker (so the work spreads evenly), whole calls or
    whole model batches (no ragged batch inside), and at most 4 calls (a killed worker's block is redone)."""
    share = math.ceil(photos / (workers * 4))
    if share >= call_rows:
        return call_rows * min(4, share // call_rows)
    return max(batch_size, math.ceil(share / batch_size) * batch_size)


class _NoProgressBarNotice(logging.Filter):
    """Ray Data warns that its progress bars are off: they are, on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Progress bars disabled" not in record.getMessage()


class _Progress:
    """Photos done, photos/s, ETA and failures: a bar on a terminal, else a line every 30 s.

    The rate counts from the first results (the workers' start-up is not captioning speed).
    """

    def __init__(self, total: int, err: TextIO, interval: float = 30.0):
        self.total, self.err, self.interval = total, err, interval
        self.done = self.failed = 0
        self.first: tuple[float, int] | None = None
        self.last_line = time.monotonic()
        self.bar = None
        if getattr(err, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="photo", file=err, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {postfix}]")

    def update(self, rows: int, failed: int) -> None:
        now = time.monotonic()
        self.done += rows
        self.failed += failed
        if self.first is None:
            self.first = (now, self.done)
        if self.bar is not None:
            self.bar.update(rows)
            self.bar.set_postfix_str(self.summary())
        elif now - self.last_line >= self.interval or self.done == self.total:
            self.last_line = now
            print(f"imgcap archive: {self.line()}", file=self.err, flush=True)

    def rate(self) -> float:
        now = time.monotonic()
        if self.first is None or now <= self.first[0]:
            return 0.0
        return (self.done - self.first[1]) / (now - self.first[0])

    def summary(self) -> str:
        rate = self.rate()
        if self.done >= self.total:
            timing = "done"
        elif rate > 0:
            timing = f"{rate:.1f} photos/s, ETA {_duration((self.total - self.done) / rate)}"
        else:
            timing = "starting"
        return f"{timing}, {self.failed} failed"

    def note(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(f"imgcap archive: {message}", file=self.err)
        else:
            print(f"imgcap archive: {message}", file=self.err)

    def line(self) -> str:
        return f"{self.done}/{self.total} photos, {self.summary()}"

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
