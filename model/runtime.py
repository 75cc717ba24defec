"""The inference runtimes behind :class:`~model.captioner.Captioner`: ONNX Runtime (default) or TensorFlow.

Both expose the same four calls, which the shared numpy search (:mod:`model.search`) drives::

    grid (b, L, C), logits (b, 1000) or None = encode(pixels (b, S, S, 3))
    memory (tuple, batch first), hidden (b, U) = prepare(features (b, L, C), tags (b, T) or None)
    hidden, scores (b, V), attention (b, L) = step(tokens (b,), hidden, memory)

:class:`OnnxRuntimeModel` imports no TensorFlow: it runs the encoder graph (see
:mod:`model.encoder_graphs`) and the decoder graphs written into the bundle at export
(:mod:`model.onnx_export`). :class:`TensorFlowModel` runs the Keras models (``--runtime tf``: for
development, training-time evaluation and the parity tests).

Device ``"auto"`` takes the best execution provider this onnxruntime build has (CUDA, DirectML,
CoreML, else CPU); ``"cpu"`` the CPU. A GPU provider that fails to start falls back to the CPU and
says so in :attr:`InferenceModel.device`, the line the status bar and ``--json`` show.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from model.bundle import Bundle, BundleError, read_checked
from model.encoders import get_encoder_spec
from model.errors import ModelSetupError

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnx", "tf")
DEVICES = ("auto", "cpu")
CPU_PROVIDER = "CPUExecutionProvider"
#: GPU execution providers in order of preference, with the names users know them by.
GPU_PROVIDERS = {
    "CUDAExecutionProvider": "CUDA",
    "DmlExecutionProvider": "DirectML",
    "CoreMLExecutionProvider": "CoreML",
}


class RuntimeUnavailable(ModelSetupError, RuntimeError):
    """The requested runtime cannot run this bundle here; the message says why and what to do."""


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def tensorflow_available() -> bool:
    """Whether TensorFlow is installed (found, not imported: importing it takes seconds)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        return False


#: What the TensorFlow runtime needs: the ``[train]`` extra (the app itself runs on ONNX Runtime).
NO_TENSORFLOW = "TensorFlow is not installed (it comes with pip install 'imgcap[train]')"


def choose_runtime(bundle: Bundle, runtime: str = "auto") -> str:
    """``"onnx"`` or ``"tf"`` for ``runtime`` ``"auto"``/``"onnx"``/``"tf"``.

    Auto picks ONNX Runtime when the bundle has graphs and onnxruntime is installed, else TensorFlow.

    Raises:
        RuntimeUnavailable: neither runtime can run the bundle here (the message says why).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "tf":
        if not tensorflow_available():
            raise RuntimeUnavailable(f"--runtime tf: {NO_TENSORFLOW}; the default runtime, ONNX Runtime, needs none")
        return "tf"
    problem = None
    if not bundle.graphs:
        problem = (f"the bundle {bundle.path} has no ONNX graphs: add them with "
                   f"`python -m training.export_onnx --bundle {bundle.path}` (needs TensorFlow)")
    elif not onnxruntime_available():
        problem = "onnxruntime is not installed: pip install onnxruntime (or imgcap[gpu] for onnxruntime-gpu)"
    if problem is None:
        return "onnx"
    if runtime == "onnx":
        raise RuntimeUnavailable(problem)
    if not tensorflow_available():
        raise RuntimeUnavailable(f"{problem}; and {NO_TENSORFLOW}, which could run it instead")
    log.info("%s; using TensorFlow", problem)
    return "tf"


def create_model(bundle: Bundle, *, runtime: str = "auto", device: str = "auto",
                 encoder_weights: str | Path | None = None, threads: int = 0):
    """The bundle's model on the chosen runtime (see :func:`choose_runtime`).

    ``threads``: threads per operation on the CPU (0: the runtime's default, every core). Several
    models sharing a machine (``imgcap archive``'s actors) each take their share.
    """
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if choose_runtime(bundle, runtime) == "onnx":
        factory = functools.partial(_default_session_factory, threads=threads) if threads else None
        return OnnxRuntimeModel(bundle, device=device, encoder_weights=encoder_weights, session_factory=factory)
    if threads:
        _set_tf_threads(threads)
    return TensorFlowModel(bundle, device=device, encoder_weights=encoder_weights)


def _set_tf_threads(threads: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:  # TensorFlow already ran something in this process: its pools are fixed
        log.warning("TensorFlow is already initialised; it keeps its own thread count")


# -- ONNX Runtime ------------------------------------------------------------------------------------

def preferred_providers(device: str = "auto", available: list[str] | None = None) -> list[str]:
    """Execution providers to ask for: the best GPU one present (device ``"auto"``), then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers() if available is None else available
    if device == "auto":
        for provider in GPU_PROVIDERS:
            if provider in available:
                return [provider, CPU_PROVIDER]
    return [CPU_PROVIDER]


SessionFactory = Callable[..., object]


def _default_session_factory(model, providers: list[str], threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # a provider that cannot start is reported by us, once
    options.intra_op_num_threads = threads
    # Worker threads that spin while waiting burn the cores the GUI, photo decoding and any other
    # program need; on a busy 2-core machine spinning made the encoder 1.5-2x slower (docs/RUNTIME.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=providers)


class OnnxRuntimeModel:
    """The encoder and decoder graphs on ONNX Runtime.

    Attributes:
        runtime: ``"onnx"``.
        provider: the execution provider that runs the graphs (e.g. ``"CPUExecutionProvider"``).
        device: what the user sees, e.g. ``"CPU (ONNX Runtime)"``, ``"GPU: CUDA (ONNX Runtime)"``, or
            ``"CPU (ONNX Runtime; CUDA failed to start: …)"`` after a fallback.
        fallback: why a GPU provider was not used, or None.
    """

    runtime = "onnx"

    def __init__(self, bundle: Bundle, *, device: str = "auto", encoder_weights: str | Path | None = None,
                 session_factory: SessionFactory | None = None):
        self.bundle = bundle
        self.spec = get_encoder_spec(bundle.encoder_name)
        self._factory = session_factory or _default_session_factory
        graphs = bundle.graphs
        if not graphs:
            raise RuntimeUnavailable(f"the bundle {bundle.path} has no ONNX graphs")
        try:
            self.num_tags = int(graphs.get("num_tags", 0))
            self._memory_names = [f"memory_{i}" for i in range(int(graphs["memory"]))]
            prepare_entry, step_entry = graphs["prepare"], graphs["step"]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"{bundle.path}: the config's \"graphs\" entry is malformed ({exc!r})") from None
        self.fallback: str | None = None
        self.provider = CPU_PROVIDER
        # The first session decides the provider; the decoder's sessions follow it.
        self._encoder = self._encoder_session(encoder_weights, preferred_providers(device))
        self._prepare = self._graph_session(prepare_entry, {"features", *(("tags",) if self.num_tags else ())})
        self._step = self._graph_session(step_entry, {"tokens", "hidden", *self._memory_names})
        self._encoder_outputs = [o.name for o in self._encoder.get_outputs()]
        name = GPU_PROVIDERS.get(self.provider)
        self.device = f"GPU: {name} (ONNX Runtime)" if name else "CPU (ONNX Runtime)"
        if self.fallback:
            self.device = f"CPU (ONNX Runtime; {self.fallback})"

    def _encoder_session(self, weights: str | Path | None, providers: list[str]):
        from model.encoder_graphs import encoder_graph, forget_cached_graph, shipped_encoder_graph

        def load(graph: Path | bytes):
            return self._session(str(graph) if isinstance(graph, Path) else graph, providers)

        graph = encoder_graph(self.spec.name, weights=weights)
        try:
            return load(graph)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own kinds: a file it cannot load
            if not isinstance(graph, Path) or graph == shipped_encoder_graph(self.spec.name):
                raise _unloadable(self.spec.name, graph, exc) from None
            log.warning("the cached encoder graph %s cannot be loaded (%s); building it again", graph, exc)
            forget_cached_graph(graph)
        graph = encoder_graph(self.spec.name, weights=weights)
        try:
            return load(graph)
        except Exception as exc:  # noqa: BLE001
            raise _unloadable(self.spec.name, graph, exc) from None

    def _graph_session(self, entry, inputs: set[str]):
        """A session of one of the bundle's decoder graphs, checked to read ``inputs``."""
        if not isinstance(entry, dict):
            raise BundleError(f"{self.bundle.path}: the config's \"graphs\" entry is malformed ({entry!r})")
        data = _read_graph(self.bundle, entry)
        try:
            session = self._session(data, [self.provider, CPU_PROVIDER])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own kinds (InvalidProtobuf, …)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{self.bundle.path}: the ONNX graph {entry.get('file')} cannot be loaded "
                              f"({first})") from None
        found = {i.name for i in session.get_inputs()}
        if found != inputs:
            raise BundleError(f"{self.bundle.path}: the ONNX graph {entry.get('file')} reads {sorted(found)}, "
                              f"where the config says {sorted(inputs)}")
        return session

    def _session(self, model, providers: list[str]):
        providers = list(dict.fromkeys(providers))
        wanted = providers[0]
        try:
            session = self._factory(model, providers)
        except Exception as exc:  # noqa: BLE001  (a GPU provider's init failure: any error type)
            if wanted == CPU_PROVIDER:
                raise
            session = self._factory(model, [CPU_PROVIDER])
            self._fell_back(wanted, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            return session
        active = session.get_providers()[0] if session.get_providers() else CPU_PROVIDER
        if active != wanted and wanted != CPU_PROVIDER:
            self._fell_back(wanted, "not usable on this machine")
        else:
            self.provider = active
        return session

    def _fell_back(self, wanted: str, reason: str) -> None:
        self.provider = CPU_PROVIDER
        if self.fallback is None:
            self.fallback = f"{GPU_PROVIDERS.get(wanted, wanted)} failed to start: {reason}"
            log.warning("GPU runtime %s; running on the CPU", self.fallback)

    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = dict(zip(self._encoder_outputs, self._encoder.run(None, {"pixels": pixels.astype(np.float32)})))
        grid = outputs["grid"]
        return grid.reshape(grid.shape[0], -1, grid.shape[-1]), outputs.get("logits")

    def prepare(self, features: np.ndarray, tags: np.ndarray | None = None):
        feeds = {"features": features.astype(np.float32, copy=False)}
        if self.num_tags:
            feeds["tags"] = tags.astype(np.float32, copy=False)
        *memory, hidden = self._prepare.run(None, feeds)
        return tuple(memory), hidden

    def step(self, tokens: np.ndarray, hidden: np.ndarray, memory: tuple[np.ndarray, ...]):
        feeds = {"tokens": tokens.astype(np.int32, copy=False), "hidden": hidden}
        feeds.update(zip(self._memory_names, memory))
        hidden, scores, attention = self._step.run(None, feeds)
        return hidden, scores, attention


def _unloadable(name: str, graph: Path | bytes, exc: Exception) -> ModelSetupError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = graph if isinstance(graph, Path) else "built from the installed weights"
    return ModelSetupError(f"the {name} encoder graph ({where}) cannot be loaded ({first}); the installation "
                           "is damaged: reinstall imgcap")


def _read_graph(bundle: Bundle, entry: dict) -> bytes:
    return read_checked(bundle.path, entry["file"], entry.get("sha256"), "graph")


# -- TensorFlow --------------------------------------------------------------------------------------

def describe_tf_device(device: str = "auto") -> tuple[str, str]:
    """``(tf device string, human description)`` for ``device`` ``"auto"`` or ``"cpu"``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU") if device == "auto" else []
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return "/GPU:0", f"GPU: {details.get('device_name', gpus[0].name)} (TensorFlow)"
    return "/CPU:0", "CPU (TensorFlow)"


class KerasDecoderSteps:
    """A Keras decoder's ``prepare``/``step`` as compiled functions over numpy arrays: the step API
    that :class:`model.search.Search` drives (also over a decoder still being trained, in SCST)."""

    def __init__(self, decoder, tf_device: str = "/CPU:0"):
        import tensorflow as tf

        from model.onnx_export import decoder_functions

        self.decoder = decoder
        self._tf_device = tf_device
        self.num_tags = int(getattr(decoder, "num_tags", 0) or 0)
        prepare, step = decoder_functions(decoder)
        self._prepare = tf.function(prepare, reduce_retracing=True)
        self._step = tf.function(step, reduce_retracing=True)

    def prepare(self, features: np.ndarray, tags: np.ndarray | None = None):
        import tensorflow as tf

        args = [tf.convert_to_tensor(features, tf.float32)]
        if self.num_tags:
            args.append(tf.convert_to_tensor(tags, tf.float32))
        with tf.device(self._tf_device):
            *memory, hidden = self._prepare(*args)
        return tuple(m.numpy() for m in memory), hidden.numpy()

    def step(self, tokens: np.ndarray, hidden: np.ndarray, memory: tuple[np.ndarray, ...]):
        import tensorflow as tf

        with tf.device(self._tf_device):
            hidden, scores, attention = self._step(tf.convert_to_tensor(tokens, tf.int32), hidden, *memory)
        return hidden.numpy(), scores.numpy(), attention.numpy()


class TensorFlowModel(KerasDecoderSteps):
    """The Keras encoder and decoder, with compiled ``encode``/``prepare``/``step`` functions."""

    runtime = "tf"
    fallback = None

    def __init__(self, bundle: Bundle, *, device: str = "auto", encoder_weights: str | Path | None = None):
        import tensorflow as tf

        from model.encoders import build_encoder

        self.bundle = bundle
        self.spec = get_encoder_spec(bundle.encoder_name)
        self._tf_device, self.device = describe_tf_device(device)
        self.provider = "TensorFlow " + ("GPU" if self._tf_device.startswith("/GPU") else "CPU")
        with tf.device(self._tf_device):
            self.encoder = build_encoder(self.spec.name, weights=encoder_weights)
            decoder = bundle.build_decoder()
        super().__init__(decoder, self._tf_device)
        self._encode = tf.function(lambda x: self.encoder(x, training=False), reduce_retracing=True)

    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import tensorflow as tf

        with tf.device(self._tf_device):
            out = self._encode(tf.convert_to_tensor(pixels, tf.float32))
        grid, logits = (out[0], out[1]) if isinstance(out, (list, tuple)) else (out, None)
        grid = grid.numpy()
        return grid.reshape(grid.shape[0], -1, grid.shape[-1]), None if logits is None else logits.numpy()
