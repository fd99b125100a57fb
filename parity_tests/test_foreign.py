"""Porting a Keras model this project did not build: the starting model's own code, trained a few
steps, saved in both Keras formats."""

from __future__ import annotations

import numpy as np
import pytest

from parity_tests.seed_reference import keras, seed_unet
from unet_bridge import random_input, torch_model
from unet_bridge.parity import head, reference_taps, torch_taps
from unet_cli.main import main
from unet_keras.foreign import load_keras_weights
from unet_spec import check_against_noise, get_preset, load_weights

SPEC = get_preset("seed-small")
SIZE = 188


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("foreign")
    keras.utils.set_random_seed(0)
    model = seed_unet((SIZE, SIZE, 3), 2, base_filters=16)
    initial = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((4, SIZE, SIZE, 3), dtype=np.float32)
    y = (rng.random((4, *model.output_shape[1:])) > 0.5).astype(np.float32)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(initial, model.get_weights(), strict=True))
    model.save(folder / "seed.keras")
    model.save_weights(folder / "seed.weights.h5")
    return folder, model


@pytest.mark.parametrize("source", ["seed.keras", "seed.weights.h5"])
def test_port_foreign_model(trained, source, capsys) -> None:
    folder, model = trained
    dst = folder / f"{source}.safetensors"
    assert main(["port", str(folder / source), str(dst), "--preset", "seed-small"]) == 0
    out = capsys.readouterr().out
    assert "verified" in out
    weights, spec = load_weights(dst, SPEC)
    # The trained head (1×1 conv, sigmoid) lands at plan block ``head`` in canonical layout.
    kernel, bias = model.layers[-1].get_weights()
    np.testing.assert_array_equal(weights["head.weight"][:, :, 0, 0], kernel[0, 0].T)
    np.testing.assert_array_equal(weights["head.bias"], bias)
    # The ported weights compute what the foreign model computes.
    x = random_input(SPEC, SIZE, 1, seed=4)
    logits = torch_taps(torch_model(SPEC, weights), x, ["head"])["head"]
    logits64 = reference_taps(SPEC, weights, x, ["head"])["head"]
    from unet_keras import to_nchw, to_nhwc

    foreign = to_nchw(np.asarray(model(to_nhwc(x))))
    check = check_against_noise(
        foreign, head(logits, "sigmoid"), head(logits64, "sigmoid"), labels="argmax"
    )
    assert check.passed and check.decisive > 0, check
    if source.endswith(".keras"):
        assert "source model vs PyTorch (sigmoid)" in out


@pytest.mark.kernel_free  # a refusal from the layers' structure: nothing is computed
@pytest.mark.parametrize(
    ("convs", "where"),
    [
        (3, "layer conv2d_10 (Conv2D) does not fit plan block dec4.conv1"),  # one extra
        (1, "layer conv2d_9 (Conv2D) does not fit plan block mid.conv2"),  # one missing
    ],
)
def test_extra_or_missing_layer_is_refused(tmp_path, convs, where) -> None:
    keras.backend.clear_session()  # auto-names restart at conv2d
    model = seed_unet((252, 252, 3), 2, base_filters=16, bottleneck_convs=convs)
    model.save(tmp_path / "odd.keras")
    with pytest.raises(ValueError) as info:
        load_keras_weights(tmp_path / "odd.keras", SPEC)
    message = str(info.value)
    assert where in message and "expected weights" in message and "found" in message
    assert "\n" not in message
