"""Keras U-Nets built by their own code, ported with no flags: keras-unet's ``vanilla_unet`` and
``custom_unet`` (the installed package) and zhixuhao/unet (the suite's stand-in of its layout,
``tests/peers/zhixuhao_layout.py``).

Each model gets random weights (biases and batch-norm statistics too, so a dropped bias or a
misplaced norm shows), is saved as ``.keras`` and as a legacy ``.h5``, ported by ``unet port`` with
no spec, and the ported weights are run in the PyTorch twin against the source's own forward pass
by the noise-aware rule, with rel <= 1e-5.

Each peer model is built once per module, when a test first asks for it, and each test covers one
model: both of its source files, or both reverse suffixes, in one run.
"""

from __future__ import annotations

import numpy as np
import pytest

# isort: off
import unet_keras  # noqa: F401  # loads triton before TensorFlow (see unet_keras._imports)
import keras
from keras import layers
# isort: on

from peers.zhixuhao_layout import zhixuhao_unet

from unet_bridge import random_input, torch_model
from unet_bridge.parity import head, reference_taps, torch_taps
from unet_cli.main import main
from unet_keras import to_nchw, to_nhwc
from unet_keras.foreign import (
    canonical_from_graph,
    load_into_model,
    load_keras_weights,
    save_legacy_h5,
)
from unet_keras.graph import GraphMismatchError, read_unet_graph
from unet_spec import check_against_noise, get_preset, label_rule, load_weights, save_weights
from unet_spec.sizes import small_size

keras_unet = pytest.importorskip("keras_unet.models")

REL = 1e-5  # the port's promise on top of the noise rule


def _randomise(model: keras.Model, seed: int) -> keras.Model:
    """Kernels as the builders initialise them (he_normal, glorot), biases and batch-norm
    parameters and statistics drawn away from their initial zeros and ones, as training leaves
    them."""
    rng = np.random.default_rng(seed)
    values = []
    for w, value in zip(model.weights, model.get_weights(), strict=True):
        name = w.path.rsplit("/", 1)[-1]
        if name in ("kernel",):
            values.append(value)
        elif name in ("gamma", "moving_variance"):
            values.append(rng.uniform(0.5, 1.5, value.shape))
        else:  # bias, beta, moving_mean
            values.append(rng.normal(0.0, 0.1, value.shape))
    model.set_weights([np.asarray(v, dtype=np.float32) for v in values])
    return model


# name -> (builder, check sizes beyond the model's own: only for models of any size)
MODELS = {
    "zhixuhao": (lambda: zhixuhao_unet((32, 32, 1), filters=4, depth=2), ()),
    "vanilla": (lambda: keras_unet.vanilla_unet((92, 92, 3), filters=4, num_layers=2), ()),
    "custom-bn-deconv": (
        lambda: keras_unet.custom_unet((32, 32, 3), filters=4, num_layers=2), ()),
    "custom-simple-softmax": (
        lambda: keras_unet.custom_unet(
            (None, None, 3), num_classes=3, filters=4, num_layers=3, use_batch_norm=False,
            upsample_mode="simple", dropout=0.2, output_activation="softmax"),
        (40, 56)),
}  # fmt: skip

EXPECTED = {
    "zhixuhao": get_preset("zhixuhao").replace(base_filters=4, depth=2, dropout_at=("enc2", "mid")),
    "vanilla": get_preset("paper").replace(
        in_channels=3, num_classes=1, depth=2, base_filters=4, dropout_at=("bottom",),
        head="sigmoid"),
    "custom-bn-deconv": get_preset("modern").replace(
        num_classes=1, depth=2, base_filters=4, conv_bias=False, act_before_norm=True,
        bn_epsilon=1e-3, bn_momentum=0.01, dropout=0.3, dropout_at=("enc1", "enc2", "mid"),
        head="sigmoid"),
    "custom-simple-softmax": get_preset("modern").replace(
        num_classes=3, depth=3, base_filters=4, norm="none", upsample="nearest",
        up_conv_kernel=0, dropout=0.2, dropout_at=("enc1", "enc2", "enc3", "mid")),
}  # fmt: skip


@pytest.fixture(scope="module")
def peer():
    """``peer(name)``: the model of ``MODELS[name]`` with random weights, built once, on first
    use."""
    models: dict[str, keras.Model] = {}

    def get(name: str) -> keras.Model:
        if name not in models:
            build, _ = MODELS[name]
            models[name] = _randomise(build(), seed=list(MODELS).index(name))
        return models[name]

    return get


def _check(model: keras.Model, spec, weights, size: int, seed: int = 3):
    x = random_input(spec, size, 1, seed)
    logits = torch_taps(torch_model(spec, weights), x, ["head"])["head"]
    logits64 = reference_taps(spec, weights, x, ["head"])["head"]
    out = to_nchw(np.asarray(model(to_nhwc(x), training=False)))
    act = spec.head
    return check_against_noise(
        out, head(logits, act), head(logits64, act), labels=label_rule(spec, True)
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_the_spec_is_read_from_the_graph(peer, name) -> None:
    graph = read_unet_graph(peer(name))
    assert graph.spec == EXPECTED[name], graph.spec.diff(EXPECTED[name])
    if name.startswith("custom"):  # dropout between a level's convs moves after them
        assert any("inside a level" in note for note in graph.notes)
    else:
        assert graph.notes == ()


def test_the_full_size_zhixuhao_layout_is_the_preset() -> None:
    assert read_unet_graph(zhixuhao_unet()).spec == get_preset("zhixuhao")


@pytest.mark.parametrize("name", list(MODELS))
def test_port_with_no_flags_matches_the_source(peer, tmp_path, capsys, name) -> None:
    model = peer(name)
    ported = {}
    for src, dst in [(".keras", ".safetensors"), (".h5", ".keras")]:
        model.save(tmp_path / f"{name}{src}")  # .h5: legacy HDF5, as ModelCheckpoint writes
        out_path = tmp_path / f"ported{dst}"
        assert main(["port", str(tmp_path / f"{name}{src}"), str(out_path)]) == 0
        out = capsys.readouterr().out
        assert "source model vs PyTorch" in out, (src, out)
        weights, spec = load_weights(out_path) if dst == ".safetensors" else load_keras_weights(
            out_path)[:2]  # fmt: skip
        assert spec == EXPECTED[name], src
        ported[src] = weights
    # Both source files port to the same tensors, so one run against the source proves both.
    weights, from_h5 = ported[".keras"], ported[".h5"]
    assert weights.keys() == from_h5.keys()
    for key, value in weights.items():
        np.testing.assert_array_equal(from_h5[key], value, err_msg=key)
    _, extra = MODELS[name]
    sizes = [model.input_shape[1] or small_size(spec), *extra]
    for size in sizes:
        check = _check(model, spec, weights, size)
        assert check.passed and check.rel <= REL and check.decisive > 0, (size, check)


def test_a_weights_file_needs_the_spec_and_matches_by_order(peer, tmp_path, capsys) -> None:
    model = peer("custom-bn-deconv")
    path = tmp_path / "custom.weights.h5"
    model.save_weights(path)
    assert main(["port", str(path), str(tmp_path / "a.safetensors")]) == 2
    assert "carries no spec" in capsys.readouterr().err
    spec = EXPECTED["custom-bn-deconv"]
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    dst = tmp_path / "b.safetensors"
    assert main(["port", str(path), str(dst), "--spec", str(spec_file)]) == 0
    weights, _ = load_weights(dst)
    check = _check(model, spec, weights, 32)
    assert check.passed and check.rel <= REL, check


@pytest.mark.parametrize("name", ["vanilla", "custom-bn-deconv", "custom-simple-softmax"])
def test_reverse_loads_in_keras_unet(peer, tmp_path, capsys, name) -> None:
    model = peer(name)
    # The forward port is proven above; here its canonical weights are only the starting point.
    graph = read_unet_graph(model)
    canonical = save_weights(canonical_from_graph(graph), graph.spec, tmp_path / "w.safetensors")
    x = to_nhwc(random_input(EXPECTED[name], model.input_shape[1] or 32, 1, seed=5))
    for suffix in [".weights.h5", ".keras"]:
        dst = tmp_path / f"back{suffix}"
        assert main(["port", str(canonical), str(dst), "--to", "keras-unet"]) == 0
        out = capsys.readouterr().out
        assert "keras-unet" in out and "with load_weights" in out, (suffix, out)
        # keras-unet's own builder, with the same arguments, loads the file and computes the same.
        fresh = MODELS[name][0]()
        fresh.load_weights(dst)
        np.testing.assert_array_equal(np.asarray(fresh(x)), np.asarray(model(x)), err_msg=suffix)


def test_reverse_loads_in_the_zhixuhao_layout(peer, tmp_path) -> None:
    model = peer("zhixuhao")
    spec = EXPECTED["zhixuhao"]
    weights = canonical_from_graph(read_unet_graph(model))
    path = save_legacy_h5(weights, spec, tmp_path / "unet_membrane.hdf5")
    fresh = zhixuhao_unet((32, 32, 1), filters=4, depth=2)
    fresh.load_weights(path)  # what its unet(pretrained_weights=path) does
    x = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(fresh(x)), np.asarray(model(x)))
    # And into a model built elsewhere, by its graph.
    other = load_into_model(zhixuhao_unet((32, 32, 1), filters=4, depth=2), weights, spec)
    np.testing.assert_array_equal(np.asarray(other(x)), np.asarray(model(x)))


@pytest.mark.parametrize(
    ("to", "spec", "field"),
    [
        ("zhixuhao", EXPECTED["zhixuhao"], "base_filters=4"),
        ("keras-unet", EXPECTED["zhixuhao"], "concat_order='skip_up'"),
        ("keras-unet", EXPECTED["custom-bn-deconv"].replace(bn_epsilon=1e-5), "bn_epsilon"),
    ],
)
def test_reverse_refuses_a_spec_the_layout_cannot_hold(tmp_path, capsys, to, spec, field) -> None:
    from unet_spec import random_weights, save_weights

    src = save_weights(random_weights(spec, seed=0), spec, tmp_path / "w.safetensors")
    dst = tmp_path / "out.weights.h5"
    assert main(["port", str(src), str(dst), "--to", to]) == 2
    err = capsys.readouterr().err.strip()
    assert field in err and "\n" not in err, err
    assert not dst.exists()


def _planted() -> keras.Model:
    """A U-Net with three features the spec cannot express: a 5x5 conv, a tanh, and an extra
    BatchNormalization on one conv only."""
    x0 = keras.Input((32, 32, 1))
    x = layers.Conv2D(4, 5, padding="same", activation="relu")(x0)
    x = layers.Conv2D(4, 3, padding="same", activation="tanh")(x)
    skip = x
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(4, 2, strides=2)(x)
    x = layers.Concatenate()([x, skip])
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    return keras.Model(x0, layers.Conv2D(1, 1, activation="sigmoid")(x))


def test_a_planted_mismatch_lists_every_feature(tmp_path, capsys) -> None:
    model = _planted()
    with pytest.raises(GraphMismatchError) as info:
        read_unet_graph(model)
    found = " | ".join(info.value.mismatches)
    assert len(info.value.mismatches) >= 3, found
    names = [layer.name for layer in model.layers]
    conv5, tanh, bn = names[1], names[2], names[5]
    assert f"layer {conv5} (Conv2D): kernel 5x5" in found, found
    assert f"layer {tanh} (Conv2D): no activation after this conv" in found or (
        f"layer {tanh}" in found and "tanh" in found
    ), found
    assert f"layer {bn} (BatchNormalization)" in found and "norm" in found, found
    # Through the command: exit 2, one line, nothing written.
    model.save(tmp_path / "odd.keras")
    dst = tmp_path / "odd.safetensors"
    assert main(["port", str(tmp_path / "odd.keras"), str(dst)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "kernel 5x5" in err and not dst.exists(), err


def test_match_layers_lists_every_mismatch(peer, tmp_path) -> None:
    model = peer("zhixuhao")
    path = tmp_path / "z.weights.h5"
    model.save_weights(path)
    wrong = EXPECTED["zhixuhao"].replace(head_convs=(), base_filters=8)
    with pytest.raises(ValueError) as info:
        load_keras_weights(path, wrong)
    message = str(info.value)
    assert message.count("does not fit plan block") > 1 and "is extra" in message, message
    assert "\n" not in message


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file"])
def test_bad_h5_exits_2(tmp_path, capsys, content) -> None:
    src = tmp_path / "broken.h5"
    src.write_bytes(content)
    assert main(["port", str(src), str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.h5" in err and "\n" not in err, err
