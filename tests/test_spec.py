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
