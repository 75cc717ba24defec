"""Several decoders as one at decode time: each step averages their log-probabilities (an ensemble, as
issue 11 asks to measure). For evaluation only: the app decodes with one decoder, since an ensemble of
two doubles the decoding time.

    python -m training.evaluate --bundle resources/models/flickr8k-lite2 --runtime tf \\
        --ensemble-weights runs/other/epoch09.weights.npz --data ../shared/data/flickr8k --split dev

The decoders share the bundle's vocabulary, tags, guards and decoding; the extra ones are other
weights (``runs/X/epochNN.weights.npz``), each with its run's architecture
(:func:`training.run_weights.with_run_weights`), so decoders of different shapes can be averaged.
The attention maps shown for each word are the first decoder's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model.search import log_softmax


class EnsembleSteps:
    """``prepare``/``step`` over several decoders' steps (:class:`model.runtime.KerasDecoderSteps` or
    a runtime), which :class:`model.search.Search` drives as one: the memory is the members' memories
    one after another, the hidden state their hidden states side by side, and the scores the mean of
    their log-softmaxes. ``encode`` is the first member's."""

    def __init__(self, members: Sequence):
        if not members:
            raise ValueError("an ensemble needs at least one decoder")
        self.members = list(members)
        first = self.members[0]
        self.runtime = getattr(first, "runtime", "tf")
        self.provider = getattr(first, "provider", "")
        self.device = getattr(first, "device", "")
        self._sizes: list[int] = []
        self._units: list[int] = []

    def encode(self, pixels: np.ndarray):
        return self.members[0].encode(pixels)

    def prepare(self, features: np.ndarray, tags: np.ndarray | None = None):
        prepared = [member.prepare(features, tags) for member in self.members]
        self._sizes = [len(memory) for memory, _ in prepared]
        self._units = [hidden.shape[-1] for _, hidden in prepared]
        memory = tuple(part for member_memory, _ in prepared for part in member_memory)
        return memory, np.concatenate([hidden for _, hidden in prepared], axis=-1)  # (batch, sum of units)

    def step(self, tokens: np.ndarray, hidden: np.ndarray, memory: tuple[np.ndarray, ...]):
        states, total, attention = [], None, None
        at_memory = at_hidden = 0
        for member, size, units in zip(self.members, self._sizes, self._units):
            state, scores, weights = member.step(tokens, hidden[:, at_hidden:at_hidden + units],
                                                 memory[at_memory:at_memory + size])
            at_memory, at_hidden = at_memory + size, at_hidden + units
            states.append(state)
            log_probs = log_softmax(scores)  # (rows, vocab)
            total = log_probs if total is None else total + log_probs
            attention = weights if attention is None else attention
        return np.concatenate(states, axis=-1), total / len(self.members), attention


def ensemble_captioner(captioner, weight_files: Sequence[str | Path], bundle=None):
    """Make ``captioner`` (a :class:`model.captioner.Captioner` on the TensorFlow runtime) decode with
    its decoder and one more per weight file, averaged; returns it.

    Each extra decoder is ``bundle`` (a :class:`model.bundle.Bundle`; by default the captioner's) with
    the file's weights. Pass the bundle the user named when the captioner decodes with a run's weights
    in its place (``--weights``): the bundle's own ``decoder.weights.npz`` is then shaped like the
    bundle, not like that run, and a member's missing settings are not taken from the run.
    """
    from model.runtime import KerasDecoderSteps
    from training.run_weights import with_run_weights

    if captioner.runtime != "tf":
        raise ValueError("an ensemble decodes with the TensorFlow runtime: pass --runtime tf")
    base = captioner.bundle if bundle is None else bundle
    members = [captioner.model]
    for path in weight_files:
        members.append(KerasDecoderSteps(with_run_weights(base, path).build_decoder()))
    captioner.model = EnsembleSteps(members)
    captioner.set_decoding(captioner.bundle.config.get("decoding", {}))  # the search now steps the ensemble
    return captioner
