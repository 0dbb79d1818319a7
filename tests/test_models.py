"""Model registry: every classifier builds for square and non-square inputs (1×28×28, 1×56×28, 3×32×32),
the paper's architectures match the authors' layout (REFERENCE.md "Models") with parameter counts computed
here independently from the layer shapes, seeds give identical weights, save/load round-trips without pickle."""

import math
import re

import pytest
import torch
from torch import nn

from delusive.models import (
    MODELS,
    as_image_size,
    cifar_nets,
    classifier_names,
    create_model,
    load_model,
    model_hash,
    model_kind,
    model_names,
    register_model,
    registry,
    save_model,
)
from delusive.registry import Registry

BIG = {"vgg11", "vgg16", "vgg19", "resnet18", "resnet50", "densenet121"}
SMALL_FAMILY = ["small-cnn", "small-cnn-bn", "small-resnet", "small-densenet", "mlp"]


def image(n, c, h, w, seed=0):
    """Random images in the channels-last layout the models are built in (and the loaders deliver): a
    contiguous batch through a channels-last model takes a much slower path on the CPU."""
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=torch.channels_last)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- parameter counts from layer shapes, written independently of the model code -------------------------
def conv(c_in, c_out, k, bias=False):
    return c_in * c_out * k * k + (c_out if bias else 0)


def bn(c):
    return 2 * c  # weight and bias (running stats are buffers)


def linear(d_in, d_out):
    return d_in * d_out + d_out


def densenet_bc_params(blocks, growth, c_in, k):
    """Stem conv3×3(2g)+BN, per dense layer BN-1×1(4g)-BN-3×3(g), transitions BN-1×1(c/2), final BN, head."""
    c = 2 * growth
    total = conv(c_in, c, 3) + bn(c)
    for i, n in enumerate(blocks):
        for _ in range(n):
            total += bn(c) + conv(c, 4 * growth, 1) + bn(4 * growth) + conv(4 * growth, growth, 3)
            c += growth
        if i < len(blocks) - 1:
            total += bn(c) + conv(c, c // 2, 1)
            c //= 2
    return total + bn(c) + linear(c, k)


def basic_resnet_params(blocks, widths, c_in, k):
    """Stem conv3×3+BN; basic block = two conv3×3+BN, plus a 1×1 conv+BN projection where the shape changes."""
    total = conv(c_in, widths[0], 3) + bn(widths[0])
    c = widths[0]
    for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            total += conv(c, w, 3) + bn(w) + conv(w, w, 3) + bn(w)
            if stride != 1 or c != w:
                total += conv(c, w, 1) + bn(w)
            c = w
    return total + linear(c, k)


def bottleneck_resnet_params(blocks, widths, c_in, k):
    """Bottleneck = 1×1(w)+BN, 3×3(w)+BN, 1×1(4w)+BN, plus a 1×1 conv+BN projection where the shape changes."""
    total = conv(c_in, widths[0], 3) + bn(widths[0])
    c = widths[0]
    for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            total += conv(c, w, 1) + bn(w) + conv(w, w, 3) + bn(w) + conv(w, 4 * w, 1) + bn(4 * w)
            if stride != 1 or c != 4 * w:
                total += conv(c, 4 * w, 1) + bn(4 * w)
            c = 4 * w
    return total + linear(c, k)


# ---- every registered classifier, square and non-square ---------------------------------------------------
def test_the_registry_holds_the_paper_nets_and_the_small_family():
    assert set(classifier_names()) >= BIG | set(SMALL_FAMILY)
    assert "vgg11" in model_names() and model_kind("vgg11") == "classifier"


@pytest.mark.parametrize("name", classifier_names())
def test_every_classifier_gives_logits_on_square_and_non_square_inputs(name):
    shapes = [(1, 56, 28), (3, 32, 32)] if name in BIG else [(1, 28, 28), (1, 56, 28), (3, 32, 32), (1, 30, 26)]
    for c, h, w in shapes:
        m = create_model(name, 7, c, (h, w), seed=0).eval()
        x = image(2, c, h, w, seed=1)
        with torch.no_grad():
            if h == w or name in BIG:  # the big nets pool globally; the check costs them seconds of CPU
                out = m(x)
            else:
                # the whole image counts: changing only the bottom rows (the Fashion-MNIST half of a
                # composite) changes the logits (in train mode: an untrained deep net's eval-mode BN passes
                # almost no signal, so its logits are its head's bias whatever the input)
                x2 = x.clone()
                x2[:, :, h // 2:, :] = torch.rand(2, c, h - h // 2, w, generator=torch.Generator().manual_seed(2))
                m.train()
                out = m(x)
                assert not torch.allclose(m(x2), out), (name, h, w)
        assert out.shape == (2, 7) and torch.isfinite(out).all(), (name, c, h, w)
    # device-agnostic: on the meta device any tensor the forward pass made on the CPU would fail the op
    # that mixes it in
    m = m.eval().to("meta")
    out = m(torch.empty(2, c, h, w, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 7)


def test_int_and_pair_image_sizes_build_the_same_model_and_small_cnn_sizes_its_head_from_h_and_w():
    for name in ("small-cnn", "mlp"):
        a = create_model(name, 10, 1, 28, seed=3)
        assert model_hash(a) == model_hash(create_model(name, 10, 1, (28, 28), seed=3))
        assert model_hash(a) == model_hash(create_model(name, 10, 1, [28, 28], seed=3))  # a JSON list
        assert model_hash(a) != model_hash(create_model(name, 10, 1, (56, 28), seed=3))  # control
    for (h, w), flat in (((56, 28), 32 * 14 * 7), ((30, 26), 32 * 7 * 6), ((28, 28), 32 * 7 * 7)):
        first = next(m for m in create_model("small-cnn", 10, 1, (h, w)).modules() if isinstance(m, nn.Linear))
        assert first.in_features == flat
    first = next(m for m in create_model("mlp", 10, 3, (56, 28)).modules() if isinstance(m, nn.Linear))
    assert first.in_features == 3 * 56 * 28


def test_bad_image_sizes_are_clear_errors():
    assert as_image_size(28) == (28, 28) and as_image_size([56, 28]) == (56, 28)
    with pytest.raises(ValueError, match=r"image_size: every side must be >= 8, got 8×4"):
        create_model("small-cnn", 10, 1, (8, 4))
    with pytest.raises(ValueError, match=r"image_size: every side must be >= 8, got 7×7"):
        create_model("small-cnn", 10, 1, 7)
    for bad in ((28, 28, 3), (28,), "28", 28.0, True, (28, 28.0)):
        with pytest.raises(ValueError, match=r"image_size: expected an int or an \(H, W\) pair of ints"):
            create_model("small-cnn", 10, 1, bad)


# ---- the small CPU family -----------------------------------------------------------------------------------
def _quoted_count(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    assert m, f"no parameter count matching {pattern!r}"
    return int(m.group(1).replace(",", ""))


@pytest.mark.parametrize("name", SMALL_FAMILY)
def test_small_family_docstring_parameter_counts_are_the_measured_ones(name):
    m = create_model(name, 10, 1, 28)
    assert n_params(m) == _quoted_count(r"([\d,]{5,}) parameters", MODELS.get(name).__doc__)


def test_small_family_parameter_counts_from_layer_shapes():
    counts = {n: n_params(create_model(n, 10, 1, 28)) for n in SMALL_FAMILY}
    assert counts["mlp"] == linear(784, 256) + linear(256, 256) + linear(256, 10)
    plain = conv(1, 16, 3, bias=True) + conv(16, 32, 3, bias=True) + linear(32 * 7 * 7, 128) + linear(128, 10)
    assert counts["small-cnn"] == plain
    assert counts["small-cnn-bn"] == plain - 16 - 32 + bn(16) + bn(32)  # conv biases replaced by BN
    assert counts["small-resnet"] == basic_resnet_params([1, 1, 1], [16, 32, 64], 1, 10)
    assert counts["small-densenet"] == densenet_bc_params([4, 4, 4], 12, 1, 10)
    assert len(set(counts.values())) == len(counts)  # control: five different architectures


@pytest.mark.parametrize("name", SMALL_FAMILY)
def test_same_seed_same_weights_and_global_rng_untouched(name):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = create_model(name, 10, 1, 28, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = create_model(name, 10, 1, 28, seed=5)
    c = create_model(name, 10, 1, 28, seed=6)
    assert model_hash(a) == model_hash(b) != model_hash(c)


def test_small_family_differs_in_the_ways_the_paper_nets_do():
    mods = {n: list(create_model(n, 10, 1, 28).modules()) for n in SMALL_FAMILY}

    def has(name, kind):
        return any(isinstance(m, kind) for m in mods[name])

    assert not has("small-cnn", nn.BatchNorm2d) and has("small-cnn-bn", nn.BatchNorm2d)
    assert not has("mlp", nn.Conv2d) and has("small-cnn", nn.Conv2d)
    resnet = create_model("small-resnet", 10, 1, 28)
    assert [blk.conv1.out_channels for blk in resnet.layers] == [16, 32, 64]
    assert not has("small-resnet", nn.MaxPool2d)
    dense = create_model("small-densenet", 10, 1, 28)
    grown = [layer.conv2.out_channels for layer in dense.stages if hasattr(layer, "conv2")]
    assert grown == [12] * 12 and sum(not hasattr(layer, "conv2") for layer in dense.stages) == 2  # transitions


# ---- the paper's architectures (REFERENCE.md "Models") ----------------------------------------------------
@pytest.fixture(scope="module")
def densenet121():
    return create_model("densenet121", 10, 3, 32, seed=0).eval()


def test_densenet121_stem_leaves_16x16_and_its_parameter_count_follows_from_its_layers(densenet121):
    seen = {}
    first_dense = densenet121.stages[0]
    h1 = first_dense.register_forward_pre_hook(lambda mod, inp: seen.update(stem=inp[0].shape))
    h2 = densenet121.linear.register_forward_pre_hook(lambda mod, inp: seen.update(head=inp[0].shape))
    try:
        with torch.no_grad():
            densenet121(image(2, 3, 32, 32))
    finally:
        h1.remove()
        h2.remove()
    assert tuple(seen["stem"]) == (2, 64, 16, 16)
    assert tuple(seen["head"]) == (2, 1024)
    conv0, bn0, relu0, pool0 = densenet121.stem
    assert (conv0.kernel_size, conv0.stride, conv0.out_channels) == ((3, 3), (1, 1), 64)
    assert isinstance(bn0, nn.BatchNorm2d) and isinstance(relu0, nn.ReLU)
    assert (pool0.kernel_size, pool0.stride, pool0.padding) == (3, 2, 1)
    expected = densenet_bc_params([6, 12, 24, 16], 32, 3, 10)
    assert n_params(densenet121) == expected
    assert expected != densenet_bc_params([6, 12, 24, 16], 32, 3, 100)  # control: the count sees the head


def test_densenet121_convs_are_kaiming_normal_and_resnet_keeps_the_default_init(densenet121):
    w = torch.cat([m.weight.flatten() / math.sqrt(2 / (m.weight[0].numel()))
                   for m in densenet121.modules() if isinstance(m, nn.Conv2d)])
    # standardised weights of N(0, 2/fan_in): unit variance, ~4.55% beyond 2σ (a uniform law has none)
    assert abs(w.std().item() - 1) < 0.01 and abs(w.mean().item()) < 0.01
    assert 0.040 < (w.abs() > 2).float().mean().item() < 0.051
    bns = [m for m in densenet121.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)
    assert bool((densenet121.linear.bias == 0).all())
    resnet = create_model("small-resnet", 10, 3, 32, seed=0)  # the ResNet class of resnet18/50
    r = torch.cat([m.weight.flatten() / math.sqrt(2 / (m.weight[0].numel()))
                   for m in resnet.modules() if isinstance(m, nn.Conv2d)])
    assert abs(r.std().item() - 1 / math.sqrt(6)) < 0.01  # control: PyTorch's default U(±1/sqrt(fan_in))


@pytest.mark.parametrize("name,stages", [("resnet18", [2, 2, 2, 2]), ("resnet50", None)])
def test_resnets_have_a_3x3_stem_and_no_max_pool(name, stages):
    m = create_model(name, 10, 3, 32, seed=0).eval()
    assert not any(isinstance(mod, nn.MaxPool2d | nn.AvgPool2d) for mod in m.modules())
    assert (m.conv1.kernel_size, m.conv1.stride) == ((3, 3), (1, 1))
    if stages is None:
        assert n_params(m) == bottleneck_resnet_params([3, 4, 6, 3], [64, 128, 256, 512], 3, 10)
        return
    seen = {}
    h = m.layers[0].register_forward_pre_hook(lambda mod, inp: seen.update(x=inp[0].shape))
    try:
        with torch.no_grad():
            m(image(1, 3, 32, 32))
    finally:
        h.remove()
    assert tuple(seen["x"]) == (1, 64, 32, 32)  # full resolution after the stem
    assert n_params(m) == basic_resnet_params(stages, [64, 128, 256, 512], 3, 10)


@pytest.mark.parametrize("name,depth", [("vgg11", 11), ("vgg16", 16), ("vgg19", 19)])
def test_vgg_has_bn_after_every_conv_five_pools_and_a_single_linear_head(name, depth):
    m = create_model(name, 10, 3, 32, seed=0)
    layers = list(m.features)
    convs = [i for i, mod in enumerate(layers) if isinstance(mod, nn.Conv2d)]
    assert len(convs) == depth - 3  # VGG-n: n weight layers, three of them fully connected in the original
    assert all(isinstance(layers[i + 1], nn.BatchNorm2d) and isinstance(layers[i + 2], nn.ReLU) for i in convs)
    assert sum(isinstance(mod, nn.MaxPool2d) for mod in layers) == 5
    heads = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert len(heads) == 1 and (heads[0].in_features, heads[0].out_features) == (512, 10)


def test_paper_nets_parameter_counts_quoted_in_cifar_nets_are_the_measured_ones(densenet121):
    doc = cifar_nets.__doc__
    for name in sorted(BIG):
        m = densenet121 if name == "densenet121" else create_model(name, 10, 3, 32)
        assert n_params(m) == _quoted_count(rf"\b{name} ([\d,]+)", doc), name


# ---- registry, errors, save/load -----------------------------------------------------------------------------
def test_model_kinds_keep_non_classifiers_out_of_classifier_names(monkeypatch):
    monkeypatch.setattr(registry, "MODELS", Registry("model"))
    monkeypatch.setattr(registry, "_KINDS", {})
    register_model("toy-net")(lambda k, c, s: nn.Linear(2, k))
    register_model("toy-generator", kind="generator")(lambda k, c, s: nn.Identity())
    assert registry.model_names() == ["toy-generator", "toy-net"]
    assert registry.classifier_names() == ["toy-net"]
    assert registry.model_kind("toy-generator") == "generator"
    with pytest.raises(ValueError, match="model 'toy-net' is registered twice"):
        register_model("toy-net")(lambda k, c, s: nn.Identity())


def test_unknown_model_and_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="model: unknown name 'vgg13'; expected one of"):
        create_model("vgg13")
    with pytest.raises(ValueError, match="num_classes"):
        create_model("small-cnn", 1)
    with pytest.raises(ValueError, match="in_channels"):
        create_model("small-cnn", 10, 0)


def test_save_load_roundtrip(tmp_path):
    m = create_model("small-cnn", 10, 1, 28, seed=1)
    save_model(m, tmp_path / "model.pt", {"arch": "small-cnn", "num_classes": 10, "in_channels": 1,
                                           "image_size": 28})
    m2, meta = load_model(tmp_path)
    assert meta["weights_sha256"] == model_hash(m) == model_hash(m2)
    assert not m2.training


def test_save_load_roundtrip_of_a_non_square_model(tmp_path):
    m = create_model("small-cnn-bn", 10, 1, (56, 28), seed=1)
    save_model(m, tmp_path / "model.pt", {"arch": "small-cnn-bn", "num_classes": 10, "in_channels": 1,
                                           "image_size": [56, 28]})
    m2, _ = load_model(tmp_path)
    x = image(2, 1, 56, 28)
    with torch.no_grad():
        assert torch.equal(m.eval()(x), m2(x))


def test_load_rejects_a_pickle_payload(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "model.pt").write_bytes(pickle.dumps({"w": Evil()}))
    (tmp_path / "model.json").write_text('{"arch": "small-cnn", "num_classes": 10, "in_channels": 1, '
                                         '"image_size": 28}')
    with pytest.raises(ValueError, match="not a valid delusive model checkpoint"):
        load_model(tmp_path / "model.pt")
