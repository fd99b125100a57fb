"""``unet_keras``: plan names, the seed-compatible ``unet_model`` and ``.keras`` files."""

from __future__ import annotations

import numpy as np
import pytest

import unet_keras
from unet_keras.io import export_keras, load_keras, read_keras_spec, save_keras
from unet_spec import PRESETS, get_preset, random_weights

# The starting model, read off its code: encoder (Conv2D, Activation) ×2 + MaxPool2D per level,
# the bottleneck, decoder Conv2DTranspose, Resizing, Concatenate, (Conv2D, Activation) ×2, head.
SEED_LAYERS = (
    ["InputLayer"]
    + ["Conv2D", "Activation", "Conv2D", "Activation", "MaxPooling2D"] * 4
    + ["Conv2D", "Activation", "Conv2D", "Activation"]
    + ["Conv2DTranspose", "Resizing", "Concatenate", "Conv2D", "Activation", "Conv2D", "Activation"]
    * 4
    + ["Conv2D"]
)


def test_unet_model_reproduces_the_seed() -> None:
    model = unet_keras.unet_model(input_shape=(572, 572, 3), num_classes=2)
    assert model.output_shape == (None, 388, 388, 2)
    assert model.count_params() == 31_031_810
    assert [type(layer).__name__ for layer in model.layers] == SEED_LAYERS
    assert model.layers[-1].get_config()["activation"] == "sigmoid"
    resized = [layer.get_config() for layer in model.layers if type(layer).__name__ == "Resizing"]
    assert [(c["height"], c["interpolation"]) for c in resized] == [
        (56, "bilinear"), (104, "bilinear"), (200, "bilinear"), (392, "bilinear")
    ]  # fmt: skip


def test_unet_model_defaults() -> None:
    model = unet_keras.unet_model()
    assert model.input_shape == (None, 256, 256, 3)
    assert model.output_shape == (None, 68, 68, 1)


@pytest.mark.parametrize("name", ["paper-small", "modern-small", "modern-bilinear-small"])
def test_layer_names_are_plan_names(name: str) -> None:
    spec = PRESETS[name]
    model = unet_keras.build_unet(spec, 188 if spec.padding == "valid" else 64)
    assert [layer.name for layer in model.layers] == [b.keras_name for b in spec.plan()]
    assert model.get_layer("dec1_concat").name == "dec1_concat"
    assert model.count_params() == spec.plan().total_values


def test_batchnorm_conventions() -> None:
    spec = get_preset("modern-small").replace(bn_epsilon=1e-3, bn_momentum=0.01)
    bn = unet_keras.build_unet(spec, 32).get_layer("enc1_bn1")
    assert bn.epsilon == pytest.approx(1e-3)
    assert bn.momentum == pytest.approx(0.99)


def test_any_size_model_for_same_padding_without_merge() -> None:
    model = unet_keras.build_unet(get_preset("modern-small"))
    assert model.input_shape == (None, None, None, 3)
    out = model(np.zeros((1, 48, 80, 3), np.float32), training=False)
    assert tuple(out.shape) == (1, 48, 80, 2)


def test_fixed_size_needed_for_resize_and_crop() -> None:
    with pytest.raises(ValueError, match=r"layer dec4\.skip: skip_merge='crop' needs a fixed"):
        unet_keras.build_unet(get_preset("paper-small"))


def test_bad_size_names_nearest_valid() -> None:
    with pytest.raises(ValueError, match="Nearest valid sizes"):
        unet_keras.build_unet(get_preset("paper-small"), 100)


def test_keras_file_remembers_its_spec(tmp_path) -> None:
    spec = get_preset("paper-small")
    weights = random_weights(spec)
    path = tmp_path / "m.keras"
    export_keras(weights, spec, path, 188)
    model, stored = load_keras(path)
    assert stored == spec
    back = unet_keras.to_canonical(model, spec)
    assert all(np.array_equal(back[n], weights[n]) for n in weights)
    # The file's layers start as Keras' own would when rebuilt from its config (a clone trained
    # from scratch): only the bridge's throwaway twins start from zero kernels.
    conv = model.get_layer("enc1_conv1").get_config()["kernel_initializer"]
    assert conv["class_name"] == "GlorotUniform", conv
    plain = tmp_path / "plain.keras"
    save_keras(model, plain)
    assert read_keras_spec(plain) is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_keras_file_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="none.keras"):
        load_keras(tmp_path / "none.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.keras: not a readable .keras file"):
        load_keras(bad)
    with pytest.raises(ValueError, match="must end in .keras"):
        save_keras(unet_keras.build_unet(get_preset("modern-small")), tmp_path / "m.h5")
