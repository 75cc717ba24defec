"""The Ray Data actor: one loaded :class:`~model.captioner.Captioner`, batches of paths in, result rows out.

The class itself knows nothing of Ray: Ray Data creates one per actor of the pool and calls it with
``pyarrow`` batches of ``(id, path, size, mtime_ns)``. A photo that fails is tried once more (a
network file system's hiccup passes); if it fails again its row records why. An error of the engine
on a whole batch falls back to one photo at a time, so one poisonous photo costs only its own row.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from imgcap_desktop.archive.results import SCHEMA, bundle_sha, failure_rows
from imgcap_desktop.metadata.apply import StoreOptions, store_outcomes
from model.results import CaptionFailure, CaptionOutcome

log = logging.getLogger(__name__)


class ModelMismatchError(RuntimeError):
    """A worker's bundle is not the one the driver planned with (different installs on the nodes)."""


class CaptionWorker:
    """Captions Ray Data batches with one loaded model; constructed once per actor.

    Args:
        bundle: the bundle folder (on storage every node sees), or None for the shipped model.
        model_sha: :func:`~imgcap_desktop.archive.results.bundle_sha` the driver expects; a worker
            whose bundle differs refuses to start, so one run never mixes two models.
        beam: beam size (1 = greedy).
        batch_size: photos per model batch; a Ray batch may hold several (loading overlaps the model).
        device: ``"auto"`` (the GPU Ray assigned, if any) or ``"cpu"``.
        runtime: ``"auto"``, ``"onnx"`` or ``"tf"`` (see :mod:`model.runtime`).
        threads: threads per operation (the CPUs Ray reserved for this actor); 0 = every core.
        store: sidecar options when ``--write-sidecars`` was asked for, else None.
        attention: also return the attention maps (and the keywords' class activation maps).
    """

    def __init__(self, *, bundle: str | None, model_sha: str, beam: int = 3, batch_size: int = 8,
                 device: str = "auto", runtime: str = "auto", threads: int = 0,
                 store: StoreOptions | None = None, attention: bool = False):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # Several actors may share one GPU: on TensorFlow each takes the memory it needs, not all of it.
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        from model.bundle import load_bundle
        from model.captioner import Captioner

        loaded = load_bundle(bundle)
        sha = bundle_sha(loaded.path)
        if sha != model_sha:
            raise ModelMismatchError(
                f"{socket.gethostname()}: bundle {loaded.path} has sha {sha[:12]}, the driver planned with "
                f"{model_sha[:12]}: install the same imgcap and bundle on every node"
            )
        self.captioner = Captioner(loaded, device=device, runtime=runtime, threads=threads)
        self.model_sha = model_sha
        self.beam = beam
        self.batch_size = batch_size
        self.store = store
        self.attention = attention
        self.host = socket.gethostname()
        # Trace the model's graphs now, so that the first photos are not slower than the rest.
        size = self.captioner.spec.input_size
        blank = np.zeros((size, size, 3), np.uint8)
        self.captioner.caption([blank] * batch_size, beam_size=beam, batch_size=batch_size)
        log.info("worker on %s ready: %s on %s", self.host, self.captioner.name, self.captioner.device)

    def __call__(self, batch: pa.Table) -> pa.Table:
        try:
            return self._caption_batch(batch)
        except Exception as exc:  # noqa: BLE001 - said in each photo's row; Ray would drop the batch unsaid
            log.exception("the worker failed on a batch")
            errors = [f"{Path(path).name}: the worker failed on its batch: {type(exc).__name__}: {exc}"
                      for path in batch["path"].to_pylist()]
            return failure_rows(batch.select(["id", *_FROM_INPUT]), errors, model=self.captioner.name,
                                model_sha=self.model_sha, beam=self.beam, attempts=1, host=self.host)

    def _caption_batch(self, batch: pa.Table) -> pa.Table:
        started = time.time()
        paths = batch["path"].to_pylist()
        outcomes, attempts = self.caption_with_retry(paths)
        captioned_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        statuses = None
        if self.store is not None:
            statuses = store_outcomes(outcomes, self.store, model_name=self.captioner.name, captioned_at=captioned_at)
        rows = [self._row(o, n, captioned_at) for o, n in zip(outcomes, attempts)]
        if statuses is not None:
            for row, outcome, status in zip(rows, outcomes, statuses):
                if outcome.ok:
                    row["sidecar"] = str(status.sidecar) if status.sidecar else None
                    row["sidecar_status"] = status.status
                    row["sidecar_message"] = status.message or None
        columns = {name: [row.get(name) for row in rows] for name in SCHEMA.names if name not in _FROM_INPUT}
        table = pa.table(columns, schema=pa.schema([f for f in SCHEMA if f.name not in _FROM_INPUT]))
        for name in ("id", *_FROM_INPUT):
            table = table.append_column(name, batch[name])
        # When this call ran (not stored): the driver's captioning rate leaves the actors' start-up out.
        table = table.append_column("_call_started", pa.array([started] * table.num_rows, pa.float64()))
        return table.append_column("_call_finished", pa.array([time.time()] * table.num_rows, pa.float64()))

    def caption_with_retry(self, paths: list[str]) -> tuple[list[CaptionOutcome], list[int]]:
        """Caption ``paths``; each failure is tried once more. Returns outcomes and attempts, in order."""
        outcomes = self._caption(paths)
        attempts = [1] * len(paths)
        failed = [i for i, outcome in enumerate(outcomes) if not outcome.ok]
        if failed:
            for i, outcome in zip(failed, self._caption([paths[i] for i in failed])):
                outcomes[i] = outcome
                attempts[i] = 2
        return outcomes, attempts

    def _caption(self, paths: list[str]) -> list[CaptionOutcome]:
        try:
            return self.captioner.caption(paths, beam_size=self.beam, batch_size=self.batch_size)
        except Exception as exc:  # an engine error must not take the whole batch (and the run) down
            if len(paths) == 1:
                log.warning("%s: the engine failed: %s", paths[0], exc)
                return [CaptionFailure(paths[0], f"the engine failed on this photo: {type(exc).__name__}: {exc}")]
            return [self._caption([path])[0] for path in paths]

    def _row(self, outcome: CaptionOutcome, attempts: int, captioned_at: str) -> dict:
        row = {"model": self.captioner.name, "model_sha": self.model_sha, "beam": self.beam,
               "attempts": attempts, "captioned_at": captioned_at, "host": self.host}
        if not outcome.ok:
            row["error"] = f"{Path(outcome.source).name}: {outcome.reason}"
            return row
        if not outcome.text:  # as the CLI does: an empty caption is never stored
            row["error"] = f"{Path(outcome.source).name}: the model gave an empty caption"
            return row
        row |= {
            "caption": outcome.text,
            "score": float(outcome.score),
            "alternatives": [{"caption": a.text, "score": float(a.score)} for a in outcome.alternatives],
            "tags": [{"word": t.word, "probability": float(t.probability),
                      "cam": _flat(t.cam) if self.attention and t.cam is not None else None}
                     for t in outcome.tags],
            "keywords": list(outcome.keywords),
            "tagged": outcome.says_keywords,
        }
        if self.attention:
            row["attention"] = _flat(outcome.attention)
            row["attention_shape"] = list(outcome.attention.shape)
        return row


_FROM_INPUT = ("path", "size", "mtime_ns")


def _flat(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, np.float32).reshape(-1)
