"""The one op vocabulary every route maps onto, so torch and ONNX graphs of one model meet.

Canonical ops: conv, convtranspose, linear (a matmul, mm or Gemm with one
weight operand), matmul (both operands computed), attention (softmax between
two matmuls, or a fused attention op), add, sub, mul, div, concat, relu,
relu6 (also Clip / clamp / hardtanh), gelu, silu, hardswish, sigmoid,
hardsigmoid, tanh, softmax, batchnorm, layernorm, groupnorm, instancenorm,
rmsnorm, maxpool, avgpool, globalavgpool, mean, upsample, embedding and the
few others in ``_OPS``. An op outside the vocabulary is labelled
``"unknown:<name>"`` (the route's own name, lower case), never an error.
"""

from __future__ import annotations

__all__ = ["PLUMBING", "SHAPE_OPS", "canonical_op"]


def _names(canonical: str, *raw: str) -> dict[str, str]:
    return {name: canonical for name in (canonical, *raw)}


# Raw op names (lower case, underscores dropped) of torch modules and functions,
# autograd nodes ("...Backward0" stripped) and ONNX op types -> canonical op.
_OPS: dict[str, str] = {
    **_names("conv", "conv1d", "conv2d", "conv3d", "conv", "convolution", "convbnrelu2d"),
    **_names("convtranspose", "convtranspose1d", "convtranspose2d", "convtranspose3d", "convtranspose"),
    **_names("linear", "gemm", "addmm", "lazylinear"),
    **_names("matmul", "mm", "bmm", "baddbmm", "matmulinteger"),
    **_names("einsum", "einsum"),
    **_names("attention", "multiheadattention", "scaleddotproductattention", "attention"),
    **_names("add", "add", "iadd", "radd"),
    **_names("sub", "sub", "isub", "rsub", "subtract"),
    **_names("mul", "mul", "imul", "multiply"),
    **_names("div", "div", "truediv", "itruediv", "floordiv", "truedivide", "divide"),
    **_names("concat", "cat", "concat", "concatenate", "stack"),
    **_names("relu", "relu"),
    **_names("relu6", "relu6", "hardtanh", "clip", "clamp"),
    **_names("gelu", "gelu", "fastgelu", "biasgelu"),
    **_names("silu", "silu", "swish"),
    **_names("hardswish", "hardswish"),
    **_names("hardsigmoid", "hardsigmoid"),
    **_names("sigmoid", "sigmoid"),
    **_names("tanh", "tanh"),
    **_names("leakyrelu", "leakyrelu"),
    **_names("prelu", "prelu"),
    **_names("elu", "elu", "selu", "celu"),
    **_names("softplus", "softplus"),
    **_names("mish", "mish"),
    **_names("erf", "erf"),
    **_names("exp", "exp"),
    **_names("log", "log"),
    **_names("sqrt", "sqrt"),
    **_names("rsqrt", "rsqrt", "reciprocal"),
    **_names("pow", "pow", "square"),
    **_names("abs", "abs"),
    **_names("neg", "neg"),
    **_names("softmax", "softmax", "logsoftmax", "safesoftmax"),
    **_names("batchnorm", "batchnorm1d", "batchnorm2d", "batchnorm3d", "batchnorm", "nativebatchnorm",
             "batchnormalization", "cudnnbatchnorm", "syncbatchnorm", "nativebatchnormlegit",
             "nativebatchnormlegitnoinference"),
    **_names("layernorm", "layernorm", "nativelayernorm", "layernormalization"),
    **_names("groupnorm", "groupnorm", "nativegroupnorm", "groupnormalization"),
    **_names("instancenorm", "instancenorm1d", "instancenorm2d", "instancenorm3d", "instancenorm",
             "instancenormalization"),
    **_names("rmsnorm", "rmsnorm", "rmsnormalization", "simplifiedlayernormalization"),
    **_names("localresponsenorm", "localresponsenorm", "lrn"),
    **_names("maxpool", "maxpool1d", "maxpool2d", "maxpool3d", "maxpool", "maxpool2dwithindices",
             "maxpool3dwithindices", "maxpool1dwithindices"),
    **_names("avgpool", "avgpool1d", "avgpool2d", "avgpool3d", "averagepool"),
    **_names("globalavgpool", "globalaveragepool"),
    **_names("globalmaxpool", "globalmaxpool"),
    **_names("adaptiveavgpool", "adaptiveavgpool1d", "adaptiveavgpool2d", "adaptiveavgpool3d"),
    **_names("adaptivemaxpool", "adaptivemaxpool1d", "adaptivemaxpool2d", "adaptivemaxpool3d"),
    **_names("mean", "mean", "reducemean"),
    **_names("reducesum", "reducesum", "sum"),
    **_names("reducemax", "amax", "max", "reducemax"),
    **_names("upsample", "upsample", "interpolate", "resize", "upsamplebilinear2d", "upsamplenearest2d",
             "upsamplebicubic2d", "upsamplingnearest2d", "upsamplingbilinear2d", "pixelshuffle",
             "depthtospace"),
    **_names("embedding", "embedding", "embeddingbag"),
    **_names("where", "where"),
    **_names("topk", "topk"),
}

# Layout, copies, casts and regularisers at inference: data passes through unchanged in kind.
PLUMBING = frozenset({
    "view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "contiguous", "clone", "detach",
    "expand", "expandas", "repeat", "tile", "squeeze", "unsqueeze", "identity", "dropout", "dropout1d",
    "dropout2d", "dropout3d", "alphadropout", "featurealphadropout", "nativedropout", "droppath",
    "pad", "constantpadnd", "zeropad1d", "zeropad2d", "zeropad3d", "constantpad1d", "constantpad2d",
    "constantpad3d", "reflectionpad1d", "reflectionpad2d", "replicationpad1d", "replicationpad2d",
    "reflectionpad2dbackward", "getitem", "select", "slice", "index", "narrow", "chunk", "split",
    "splitwithsizes", "unbind", "unsafeview", "unsafesplit", "unsafesplitwithsizes", "alias", "tocopy",
    "to", "type", "float", "half", "double", "bfloat16", "cast", "castlike", "copy", "asstrided", "gather",
    "gatherelements", "movedim", "swapaxes", "flip", "roll", "viewas", "reshapeas", "lift", "liftfresh",
    "align", "quantizelinear", "dequantizelinear", "indexselect", "reshapealias", "unsafeindex", "viewasreal",
    "viewascomplex", "diagonal",
})

# Ops whose result depends only on shapes: they never carry data.
SHAPE_OPS = frozenset({"size", "shape", "dim", "numel", "getattr", "constant", "constantofshape", "range",
                       "symsize", "symnumel", "arange", "zeros", "ones", "full", "empty", "eyelike"})


def _raw_name(name: str) -> str:
    return name.lower().replace("_", "").replace(".", "")


def canonical_op(name: str) -> str:
    """Canonical op for a route's op name; plumbing and shape ops keep their raw name."""
    raw = _raw_name(name)
    if raw in _OPS:
        return _OPS[raw]
    if raw in PLUMBING or raw in SHAPE_OPS:
        return raw
    if "scaleddotproduct" in raw or raw.endswith("attention"):
        return "attention"
    return f"unknown:{name.lower()}"
