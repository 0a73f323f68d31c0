"""EfficientNet-Lite0 port: layout conversion, padding, and agreement with PyTorch's outputs.

The PyTorch ground truth (asset ``efficientnet_lite0_reference_outputs``) holds, for three
224x224 inputs, the logits and the activations after the stem conv (before BN), after
every MBConv block and after the head conv (before BN), all NHWC.

Tolerances: logits within 1e-3 absolute (the issue's bound; observed about 1e-5), every
intermediate activation within 1e-3 absolute (observed at most about 2e-4, where
activations reach about 60 in magnitude).
"""

import re

import keras
import numpy as np
import pytest

from chollet_viz import efficientnet as eff
from chollet_viz import models
from chollet_viz.data import fetch
from chollet_viz.datasets import decode_predictions, load_image

INPUTS = ("elephant", "cat_1700", "uniform_noise")
LOGIT_ATOL = 1e-3
ACTIVATION_ATOL = 1e-3
# Keras layer whose output matches each reference activation (key suffix in the npz).
PROBES = {
    "stem_conv": "stem_conv_nhwc",
    **{f"block{b.index}_out": f"block{b.index}_nhwc" for b in eff.BLOCKS},
    "head_conv": "head_conv_nhwc",
    "logits": "logits",
}


# ------------------------------------------------------------------ helpers


def numpy_conv(x, kernel_oihw, stride, torch_pad, depthwise=False):
    """Cross-correlation as PyTorch computes it, on one HWC image, in float64.

    ``torch_pad`` is ZeroPad2d's (left, right, top, bottom).
    """
    left, right, top, bottom = torch_pad
    xp = np.pad(np.asarray(x, np.float64), ((top, bottom), (left, right), (0, 0)))
    w = np.asarray(kernel_oihw, np.float64)
    kh, kw = w.shape[2:]
    out_h = (xp.shape[0] - kh) // stride + 1
    out_w = (xp.shape[1] - kw) // stride + 1
    out = np.zeros((out_h, out_w, w.shape[0]))
    for dy in range(kh):
        for dx in range(kw):
            patch = xp[dy : dy + stride * (out_h - 1) + 1 : stride, dx : dx + stride * (out_w - 1) + 1 : stride]
            out += patch * w[:, 0, dy, dx] if depthwise else patch @ w[:, :, dy, dx].T
    return out


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def tf_same_padding(size, kernel, stride):
    """The (before, after) padding of TensorFlow's "same" along one axis."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def parse_torch_print(text):
    """Per block index: depthwise (kernel, stride, ZeroPad2d args, channels), project channels,
    whether it expands; plus the stem conv's (kernel, stride, pad)."""
    conv = re.compile(
        r"(\w+)\): Conv2dStaticSamePadding\(\s*(\d+), (\d+), kernel_size=\((\d+), \d+\), "
        r"stride=[\[(](\d+), \d+[\])].*?\(static_padding\): (?:ZeroPad2d\(\(([\d, ]+)\)\)|Identity\(\))",
        re.S,
    )
    stem = conv.search(text)
    assert stem.group(1) == "_conv_stem"
    stem_info = (int(stem.group(4)), int(stem.group(5)), tuple(int(v) for v in stem.group(6).split(", ")))
    headers = list(re.finditer(r"\((\d+)(?:-(\d+))?\): (?:\d+ x )?MBConvBlock\(", text))
    blocks = {}
    for h, nxt in zip(headers, headers[1:] + [None]):
        chunk = text[h.end() : nxt.start() if nxt else text.index("(_conv_head)")]
        convs = {m.group(1): m for m in conv.finditer(chunk)}
        dw, proj = convs["_depthwise_conv"], convs["_project_conv"]
        info = {
            "kernel": int(dw.group(4)),
            "stride": int(dw.group(5)),
            "pad": tuple(int(v) for v in dw.group(6).split(", ")),
            "expanded": int(dw.group(3)),
            "filters_out": int(proj.group(3)),
            "expands": "_expand_conv" in convs,
        }
        first, last = int(h.group(1)), int(h.group(2) or h.group(1))
        for i in range(first, last + 1):
            blocks[i] = info
    return stem_info, blocks


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def state_dict():
    return eff.read_state_dict(fetch("efficientnet_lite0_state_dict"))


@pytest.fixture(scope="module")
def reference():
    with np.load(fetch("efficientnet_lite0_reference_outputs")) as npz:
        return {key: npz[key] for key in npz.files}


@pytest.fixture(scope="module")
def model():
    return models.efficientnet_lite0(pretrained=True)


@pytest.fixture(scope="module")
def untrained():
    return eff.efficientnet_lite0(pretrained=False)


@pytest.fixture(scope="module")
def activations(model, reference):
    """Every probed activation for the three reference inputs, from one batched call."""
    probe = keras.Model(model.input, [model.get_layer(name).output for name in PROBES])
    batch = eff.preprocess_input(np.stack([reference[f"{n}_input_rgb_0_255"] for n in INPUTS]))
    # convert_to_numpy: a PyTorch output that requires grad refuses np.asarray
    outputs = [keras.ops.convert_to_numpy(o) for o in probe(batch, training=False)]
    return {
        inp: {name: out[i] for name, out in zip(PROBES, outputs)} for i, inp in enumerate(INPUTS)
    }


# ------------------------------------------------- agreement with PyTorch


@pytest.mark.parametrize("name", INPUTS)
def test_logits_match_pytorch(activations, reference, name):
    keras_logits = activations[name]["logits"]
    torch_logits = reference[f"{name}_logits"]
    assert keras_logits.shape == (1000,)
    np.testing.assert_allclose(keras_logits, torch_logits, rtol=0, atol=LOGIT_ATOL)
    top5 = lambda z: list(np.argsort(z)[::-1][:5])  # noqa: E731
    assert top5(keras_logits) == top5(torch_logits)


@pytest.mark.parametrize("name", INPUTS)
def test_intermediate_activations_match_pytorch(activations, reference, name):
    # Checked in network order so that a failure names the first layer that goes wrong.
    for layer, key in PROBES.items():
        if layer == "logits":
            continue
        expected = reference[f"{name}_{key}"]
        np.testing.assert_allclose(
            activations[name][layer], expected, rtol=0, atol=ACTIVATION_ATOL, err_msg=f"{name}: layer {layer}"
        )


def test_elephant_top3_after_softmax(activations, reference):
    for logits in (activations["elephant"]["logits"], reference["elephant_logits"]):
        top = decode_predictions(softmax(logits)[None], top=3)[0]
        assert [(name, round(score, 4)) for _, name, score in top] == [
            ("African_elephant", 0.8379),
            ("tusker", 0.0830),
            ("Indian_elephant", 0.0218),
        ]


def test_chapter_pipeline_reproduces_the_reference_input(reference):
    # The chapters load images with load_image(target_size=(224, 224)): the reference
    # inputs were made the same way, so the chapters see exactly these logits.
    for asset, name in (("creative_commons_elephant.jpg", "elephant"), ("cat.1700.jpg", "cat_1700")):
        np.testing.assert_array_equal(load_image(asset, target_size=(224, 224)), reference[f"{name}_input_rgb_0_255"])


# ------------------------------------------------------------ architecture


def test_param_count_is_pytorch_params_plus_bn_statistics(model, state_dict):
    running = sum(v.size for k, v in state_dict.items() if k.endswith(("running_mean", "running_var")))
    learned = sum(v.size for k, v in state_dict.items() if not k.endswith(("running_mean", "running_var")))
    assert learned == 4_652_008  # PyTorch's sum(p.numel() for p in model.parameters())
    assert running == 42_016  # BatchNorm buffers, which Keras counts as non-trainable weights
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == learned
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == running
    assert model.count_params() == 4_694_024


def test_blocks_match_the_pytorch_module_tree(untrained):
    stem, blocks = parse_torch_print(fetch("efficientnet_lite0_torch_print").read_text())
    assert sorted(blocks) == [b.index for b in eff.BLOCKS]
    assert stem[:2] == (3, 2)
    for spec in eff.BLOCKS:
        torch = blocks[spec.index]
        assert (torch["kernel"], torch["stride"]) == (spec.kernel_size, spec.stride), spec
        assert (torch["expanded"], torch["filters_out"]) == (spec.expanded, spec.filters_out), spec
        assert torch["expands"] == (spec.expand_ratio != 1), spec
        assert (f"block{spec.index}_expand_conv" in [layer.name for layer in untrained.layers]) == torch["expands"]
    # Identity skips exactly where stride is 1 and channels are unchanged.
    adds = {layer.name for layer in untrained.layers if isinstance(layer, keras.layers.Add)}
    assert adds == {f"block{b.index}_out" for b in eff.BLOCKS if b.has_skip}


def test_keras_same_padding_equals_pytorch_static_padding(untrained):
    """Every padded conv of the PyTorch tree, at the size the model feeds it: Keras' "same"
    gives the same result as PyTorch's explicit ZeroPad2d."""
    stem, blocks = parse_torch_print(fetch("efficientnet_lite0_torch_print").read_text())
    cases = {("stem_conv", *stem, untrained.get_layer("stem_conv").input.shape[1])}
    for i, info in blocks.items():
        size = untrained.get_layer(f"block{i}_dwconv").input.shape[1]
        cases.add((f"block{i}_dwconv", info["kernel"], info["stride"], info["pad"], size))
    rng = np.random.default_rng(0)
    seen = set()
    for layer_name, kernel, stride, pad, size in sorted(cases):
        left, right, top, bottom = pad
        assert (top, bottom) == (left, right) == tf_same_padding(size, kernel, stride), layer_name
        if (kernel, stride, pad, size) in seen:
            continue
        seen.add((kernel, stride, pad, size))
        x = rng.normal(size=(size, size, 2)).astype(np.float32)
        w = rng.normal(size=(2, 1, kernel, kernel)).astype(np.float32)
        layer = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False)
        layer.build((None, size, size, 2))
        layer.set_weights([eff.depthwise_kernel_to_keras(w)])
        got = keras.ops.convert_to_numpy(layer(x[None]))[0]
        np.testing.assert_allclose(got, numpy_conv(x, w, stride, pad, depthwise=True), atol=1e-4, err_msg=layer_name)


def test_cam_layers_are_named_feature_maps(model):
    assert eff.LAST_CONV_LAYER in eff.CAM_LAYERS
    shapes = {name: tuple(model.get_layer(name).output.shape[1:]) for name in eff.CAM_LAYERS}
    assert shapes == {"head_relu": (7, 7, 1280), "block10_out": (14, 14, 112)}
    # The CAM layers feed the classifier through pooling only: head_relu -> avg_pool.
    assert model.get_layer("avg_pool").input is model.get_layer("head_relu").output


def test_preprocess_input():
    x = np.array([0, 127, 255], dtype=np.uint8)
    out = eff.preprocess_input(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-127 / 128, 0.0, 1.0])
    tensor = eff.preprocess_input(keras.ops.convert_to_tensor([127.0, 255.0]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor), [0.0, 1.0])


# ------------------------------------------------------- layout conversion


@pytest.mark.parametrize("kernel,stride,pad", [(3, 1, (1, 1, 1, 1)), (3, 2, (0, 1, 0, 1)), (1, 1, (0, 0, 0, 0))])
def test_conv_kernel_conversion(kernel, stride, pad):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 6, 3)).astype(np.float32)
    w = rng.normal(size=(4, 3, kernel, kernel)).astype(np.float32)  # OIHW, deliberately not square in O/I
    converted = eff.conv_kernel_to_keras(w)
    assert converted.shape == (kernel, kernel, 3, 4)
    assert converted[0, kernel - 1, 2, 1] == w[1, 2, 0, kernel - 1]  # (h, w, in, out) <- (out, in, h, w)
    layer = keras.layers.Conv2D(4, kernel, strides=stride, padding="same", use_bias=False)
    layer.build((None, 6, 6, 3))
    layer.set_weights([converted])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x[None]))[0], numpy_conv(x, w, stride, pad), atol=1e-5)


def test_conv_conversion_catches_a_spatial_transpose():
    # A kernel that is not symmetric: swapping h and w would change the result.
    w = np.zeros((1, 1, 3, 3), np.float32)
    w[0, 0, 0, 2] = 1.0  # top-right tap: output(y, x) = input(y - 1, x + 1)
    x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    layer = keras.layers.Conv2D(1, 3, padding="same", use_bias=False)
    layer.build((None, 4, 4, 1))
    layer.set_weights([eff.conv_kernel_to_keras(w)])
    out = keras.ops.convert_to_numpy(layer(x[None]))[0, :, :, 0]
    assert out[1, 1] == x[0, 2, 0] and out[2, 0] == x[1, 1, 0]


def test_depthwise_kernel_conversion():
    w = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)
    converted = eff.depthwise_kernel_to_keras(w)
    assert converted.shape == (3, 3, 2, 1)
    assert converted[0, 2, 1, 0] == w[1, 0, 0, 2]
    with pytest.raises(ValueError, match=r"\(channels, 1, h, w\)"):
        eff.depthwise_kernel_to_keras(np.zeros((3, 3, 2, 1)))


def test_dense_and_batchnorm_conversion():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5)).astype(np.float32)
    w, b = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    dense = keras.layers.Dense(3)
    dense.build((None, 5))
    dense.set_weights([eff.dense_kernel_to_keras(w), b])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dense(x)), x @ w.T + b, atol=1e-5)  # torch.nn.Linear
    # BatchNorm: the converted weights must land in Keras' order gamma, beta, mean, variance.
    names = ("weight", "bias", "running_mean", "running_var")
    stats = {k: rng.uniform(0.5, 2.0, size=5).astype(np.float32) for k in names}
    bn = keras.layers.BatchNormalization(epsilon=eff.BN_EPSILON)
    bn.build((None, 5))
    bn.set_weights([stats[s] for s, _ in eff._KINDS["bn"]])
    expected = (x - stats["running_mean"]) / np.sqrt(stats["running_var"] + 1e-3) * stats["weight"] + stats["bias"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn(x, training=False)), expected, atol=1e-5)


def test_mapping_covers_every_weighted_layer(untrained, state_dict):
    weighted = {layer.name for layer in untrained.layers if layer.weights}
    assert {name for name, _, _ in eff.state_dict_mapping()} == weighted
    assert set(eff._expected_keys()) == set(state_dict)


# ------------------------------------------------------------- bad input


def _weights_snapshot(model):
    return model.get_layer("logits").get_weights() + model.get_layer("stem_conv").get_weights()


def test_missing_key_is_named(untrained, state_dict):
    broken = {k: v for k, v in state_dict.items() if k != "_blocks.3._bn1.running_var"}
    with pytest.raises(eff.StateDictError, match=r"1 missing key\(s\): _blocks\.3\._bn1\.running_var"):
        eff.load_state_dict(untrained, broken)


def test_renamed_key_is_named_as_missing_and_unexpected(untrained, state_dict):
    broken = dict(state_dict)
    broken["_fc.weights"] = broken.pop("_fc.weight")
    expected = r"missing key\(s\): _fc\.weight;.*unexpected key\(s\): _fc\.weights"
    with pytest.raises(eff.StateDictError, match=expected):
        eff.load_state_dict(untrained, broken)


def test_wrong_shape_is_named_and_leaves_model_untouched(untrained, state_dict):
    before = _weights_snapshot(untrained)
    broken = dict(state_dict)
    broken["_fc.weight"] = state_dict["_fc.weight"].T  # already in Keras' layout by mistake
    with pytest.raises(eff.StateDictError, match=r"'_fc\.weight'.*\(1000, 1280\).*'logits' expects \(1280, 1000\)"):
        eff.load_state_dict(untrained, broken)
    broken = dict(state_dict)
    broken["_blocks.0._depthwise_conv.weight"] = np.zeros((3, 3, 32, 1), np.float32)
    with pytest.raises(eff.StateDictError, match=r"_blocks\.0\._depthwise_conv\.weight.*block0_dwconv"):
        eff.load_state_dict(untrained, broken)
    for a, b in zip(before, _weights_snapshot(untrained)):
        np.testing.assert_array_equal(a, b)


def test_num_batches_tracked_is_ignored(state_dict):
    with_counters = dict(state_dict, **{"_bn0.num_batches_tracked": np.array(0)})
    converted = eff.convert_state_dict(with_counters)
    np.testing.assert_array_equal(converted["stem_bn"][3], state_dict["_bn0.running_var"])
