"""UNetSpec validation, JSON round trip and the preset registry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from unet_spec import PRESETS, UNetSpec, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_json_round_trip(name: str) -> None:
    spec = PRESETS[name]
    text = spec.to_json()
    assert UNetSpec.from_json(text) == spec
    assert json.loads(text) == spec.to_dict()


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("depth", 0, "depth=0"),
        ("depth", 2.0, "depth=2.0"),
        ("in_channels", True, "in_channels=True"),
        ("base_filters", -4, "base_filters=-4"),
        ("padding", "reflect", "padding='reflect'"),
        ("skip_merge", "add", "skip_merge='add'"),
        ("norm", "group", "norm='group'"),
        ("head", "tanh", "head='tanh'"),
        ("dropout", 1.0, "dropout=1.0"),
        ("bn_epsilon", 0.0, "bn_epsilon=0.0"),
        ("bn_momentum", 1.5, "bn_momentum=1.5"),
    ],
)
def test_invalid_field_names_field_and_value(field: str, value: object, needle: str) -> None:
    with pytest.raises(ValueError, match="UNetSpec") as info:
        UNetSpec(**{field: value})
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_inconsistent_combinations_are_refused() -> None:
    with pytest.raises(ValueError, match="skip_merge must be 'resize'"):
        UNetSpec(skip_source="pooled", skip_merge="crop")
    with pytest.raises(ValueError, match="num_classes=1"):
        UNetSpec(head="softmax", num_classes=1)
    with pytest.raises(ValueError, match="padding='valid'"):
        UNetSpec(padding="valid", skip_merge="none")


def test_unknown_fields_and_bad_json() -> None:
    with pytest.raises(ValueError, match="'widht'"):
        UNetSpec.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="not valid JSON"):
        UNetSpec.from_json("{depth: 3")


def test_diff_and_replace() -> None:
    seed = get_preset("seed")
    other = seed.replace(base_filters=16, head="softmax")
    assert seed.diff(other) == {"base_filters": (64, 16), "head": ("sigmoid", "softmax")}
    with pytest.raises(ValueError, match="depth"):
        seed.replace(depth=99)


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="known presets: .*seed"):
        get_preset("sede")


def test_spec_package_imports_no_framework() -> None:
    code = (
        "import sys, unet_spec, unet_spec.weights, unet_infer.tiling, unet_data.images\n"
        "from unet_spec import get_preset\n"
        "p = get_preset('seed').plan(); p.layout(572)\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'lightning', 'jax') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# The fields a spec had before the family switches (conv bias, concat order, ...) existed.
_FIELDS_BEFORE_THE_FAMILY = (
    "in_channels", "num_classes", "depth", "base_filters", "padding", "skip_source", "skip_merge",
    "upsample", "norm", "bn_epsilon", "bn_momentum", "dropout", "head",
)  # fmt: skip


@pytest.mark.parametrize("name", ["seed", "paper", "modern", "modern-bilinear-small"])
def test_a_file_from_before_the_family_switches_loads_as_the_same_network(name, tmp_path) -> None:
    """A canonical file whose spec JSON lacks every newer field loads as the same spec, so the
    defaults of the new switches keep old files meaning what they meant."""
    from safetensors.numpy import save_file

    from unet_spec import load_weights, random_weights
    from unet_spec.weights import FORMAT_NAME, FORMAT_VERSION

    spec = PRESETS[name].replace(depth=2, base_filters=4)
    old = {k: v for k, v in spec.to_dict().items() if k in _FIELDS_BEFORE_THE_FAMILY}
    path = tmp_path / "old.safetensors"
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "spec": json.dumps(old)}
    save_file(random_weights(spec), str(path), metadata=metadata)
    _, loaded = load_weights(path)
    assert loaded == spec
    assert loaded.plan().weight_shapes == spec.plan().weight_shapes


def test_switches_that_contradict_each_other_are_named() -> None:
    with pytest.raises(ValueError, match="skip_merge='pad' needs padding='same'"):
        UNetSpec(skip_merge="pad")
    with pytest.raises(ValueError, match="align_corners needs upsample='bilinear'"):
        UNetSpec(align_corners=True)
    with pytest.raises(ValueError, match="up_conv_kernel is the conv after interpolation"):
        UNetSpec(up_conv_kernel=2)
    with pytest.raises(ValueError, match="up_activation needs an up-step conv"):
        UNetSpec(upsample="nearest", up_conv_kernel=0, up_activation=True)
    with pytest.raises(ValueError, match=r"up_norm needs an up-step conv.*up_conv_kernel=0"):
        UNetSpec(upsample="nearest", up_conv_kernel=0, norm="batch", up_norm=True)
    with pytest.raises(ValueError, match=r"up_norm applies the spec's norm.*norm='none'"):
        UNetSpec(up_norm=True)
    with pytest.raises(ValueError, match="up_norm must be true or false. Received: up_norm=1"):
        UNetSpec(norm="batch", up_norm=1)
    with pytest.raises(
        ValueError, match=r"widths must list 3 integers.*Received: widths=\(8, 16\)"
    ):
        UNetSpec(depth=2, widths=(8, 16))
    with pytest.raises(ValueError, match="dropout_at must list sites among enc1, enc2, bottom"):
        UNetSpec(depth=2, dropout_at=("enc3",))
    with pytest.raises(ValueError, match="conv_bias must be true or false"):
        UNetSpec(conv_bias=1)


def test_widths_travel_through_json_as_lists_and_come_back_as_tuples() -> None:
    spec = PRESETS["milesial-bilinear"]
    data = json.loads(spec.to_json())
    assert data["widths"] == [64, 128, 256, 512, 512]
    assert UNetSpec.from_json(spec.to_json()) == spec
    assert UNetSpec.from_dict(data).widths == (64, 128, 256, 512, 512)


def test_up_norm_travels_through_json_and_old_files_read_it_as_off() -> None:
    spec = UNetSpec(depth=2, base_filters=4, padding="same", skip_merge="none", upsample="bilinear",
                    norm="instance", up_norm=True, up_activation=True)  # fmt: skip
    assert UNetSpec.from_json(spec.to_json()) == spec
    old = {k: v for k, v in spec.to_dict().items() if k != "up_norm"}
    assert UNetSpec.from_dict(old) == spec.replace(up_norm=False)


# keras-unet's custom_unet with batch norm, as its code builds it.
_CUSTOM_UNET = UNetSpec(
    in_channels=3, num_classes=1, depth=2, base_filters=8, padding="same", skip_merge="none",
    norm="batch", conv_bias=False, act_before_norm=True, bn_epsilon=1e-3, bn_momentum=0.01,
    head="sigmoid",
)  # fmt: skip


@pytest.mark.parametrize("layout", ["milesial", "basicunet", "zhixuhao", "keras-unet"])
def test_layouts_from_elsewhere_refuse_up_norm_by_name(layout: str) -> None:
    from unet_bridge.sources import keras_models, milesial, monai_basicunet

    check, spec = {
        "milesial": (milesial.check_spec, PRESETS["milesial"]),
        "basicunet": (monai_basicunet.check_spec, PRESETS["basicunet"]),
        "zhixuhao": (keras_models.check_zhixuhao, PRESETS["zhixuhao"]),
        "keras-unet": (keras_models.check_keras_unet, _CUSTOM_UNET),
    }[layout]
    check(spec)  # the layout's own spec passes
    with_up_norm = spec.replace(norm=spec.norm if spec.norm != "none" else "batch", up_norm=True)
    with pytest.raises(ValueError, match="up_norm=True"):
        check(with_up_norm)
