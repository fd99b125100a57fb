"""The layer plan: names, shapes, sizes, counts."""

from __future__ import annotations

import pytest

from unet_spec import DEFAULT_SIZES, PRESETS, UNetSpec, build_plan, get_preset


def test_seed_numbers_match_the_starting_model() -> None:
    plan = get_preset("seed").plan()
    layout = plan.layout(572)
    assert layout.output_shape == (2, 388, 388)
    assert layout.params == plan.trainable_params == 31_031_810
    assert layout.halo == (184, 184)
    assert round(layout.macs / 1e9, 1) == 150.8
    # Pooled skips: 284, 140, 68, 32 resized to the decoder's 392, 200, 104, 56.
    assert [layout[f"enc{i}.pool"].shape[1] for i in (1, 2, 3, 4)] == [284, 140, 68, 32]
    assert [layout[f"dec{i}.skip"].shape[1] for i in (1, 2, 3, 4)] == [392, 200, 104, 56]


def test_paper_numbers() -> None:
    layout = get_preset("paper").plan().layout(572)
    assert layout.output_shape == (2, 388, 388)
    assert layout.params == 31_030_658
    assert layout["dec4.skip"].crop == (4, 4, 4, 4)  # 64 → 56


def test_modern_keeps_the_size_and_counts_bn_statistics() -> None:
    plan = get_preset("modern").plan()
    assert plan.layout(256).output_shape == (2, 256, 256)
    assert plan.layout(256).halo == (0, 0)
    bn_channels = sum(b.out_channels for b in plan if b.kind == "batchnorm")
    assert plan.total_values == plan.trainable_params + 2 * bn_channels


def test_names_are_unique_and_hierarchical() -> None:
    for spec in PRESETS.values():
        names = [b.name for b in spec.plan()]
        assert len(names) == len(set(names))
        assert names[0] == "input" and names[-1] == "head"
        assert all(n.count(".") <= 1 for n in names)


def test_concat_order_is_upsampled_then_skip() -> None:
    plan = get_preset("paper").plan()
    assert plan["dec1.concat"].inputs == ("dec1.up", "dec1.skip")
    assert plan["dec1.skip"].inputs == ("enc1.relu2", "dec1.up")
    seed = get_preset("seed").plan()
    assert seed["dec1.skip"].inputs == ("enc1.pool", "dec1.up")


def test_bilinear_upsampling_blocks() -> None:
    plan = get_preset("modern-bilinear-small").plan()
    assert plan["dec4.upsample"].kind == "upsample"
    assert plan["dec4.up"].kind == "conv" and plan["dec4.up"].kernel == 1
    assert plan["dec4.up"].in_channels == 256 and plan["dec4.up"].out_channels == 128


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_default_sizes_are_valid(name: str) -> None:
    plan = PRESETS[name].plan()
    assert plan.is_valid_size(DEFAULT_SIZES[name])
    assert plan.nearest_valid_size(DEFAULT_SIZES[name]) == DEFAULT_SIZES[name]


def test_valid_sizes_and_nearest() -> None:
    paper = get_preset("paper").plan()
    sizes = paper.valid_sizes(100, 600)
    assert sizes[:3] == [188, 204, 220] and 572 in sizes
    assert all(b - a == 16 for a, b in zip(sizes, sizes[1:], strict=False))
    assert paper.nearest_valid_size(570) == 572
    assert paper.nearest_valid_size(570, "down") == 556
    assert paper.nearest_valid_size(10) == 188
    modern = get_preset("modern").plan()
    assert modern.valid_sizes(1, 64) == [16, 32, 48, 64]


def test_size_errors_name_block_and_nearest_sizes() -> None:
    paper = get_preset("paper").plan()
    with pytest.raises(ValueError, match=r"enc2\.pool sees an odd size.*556, 572") as info:
        paper.check_size(570)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"would produce.*Nearest valid sizes: 188"):
        paper.layout(100)
    with pytest.raises(ValueError, match="positive"):
        paper.layout(0)
    with pytest.raises(ValueError, match="integer or"):
        paper.layout("572")  # type: ignore[arg-type]


def test_seed_accepts_its_256_default_like_keras() -> None:
    seed = get_preset("seed").plan()
    layout = seed.check_size(256)  # odd pooling inputs floor, as in Keras
    assert layout.output_shape == (2, 68, 68)
    assert not seed.is_valid_size(256)  # but it is not a tiling-friendly size


def test_non_square_sizes() -> None:
    layout = get_preset("modern-small").plan().layout((64, 96))
    assert layout.output_shape == (2, 64, 96)


def test_macs_and_params_per_block() -> None:
    layout = (
        UNetSpec(in_channels=1, num_classes=1, depth=1, base_filters=2, head="sigmoid")
        .plan()
        .layout(20)
    )
    conv1 = layout["enc1.conv1"]
    assert conv1.shape == (2, 18, 18)
    assert conv1.params == 2 * 1 * 9 + 2
    assert conv1.macs == 18 * 18 * 2 * 1 * 9
    up = layout["dec1.up"]
    assert up.macs == 4 * 4 * 2 * 4 * 4  # input pixels × out × in × 2×2


def test_receptive_field_grows_with_depth() -> None:
    fields = [UNetSpec(depth=d, base_filters=4).plan().receptive_field for d in (1, 2, 3)]
    assert fields == sorted(fields) and len(set(fields)) == 3


def test_last_use_frees_skips_only_after_their_decoder() -> None:
    plan = build_plan(get_preset("paper"))
    index = {b.name: i for i, b in enumerate(plan)}
    assert plan.last_use["enc1.relu2"] == index["dec1.skip"]
    assert plan.last_use["enc1.pool"] == index["enc2.conv1"]


@pytest.mark.parametrize(
    ("norm", "act_before_norm", "upsample", "steps"),
    [
        ("batch", False, "bilinear", ["upsample", "up", "upbn", "uprelu", "concat"]),
        ("instance", True, "nearest", ["upsample", "up", "uprelu", "upnorm", "concat"]),
        ("batch", False, "transpose", ["up", "upbn", "uprelu", "concat"]),
    ],
)
def test_up_norm_sits_after_the_up_conv_in_the_norm_order(
    norm: str, act_before_norm: bool, upsample: str, steps: list[str]
) -> None:
    spec = UNetSpec(depth=2, base_filters=4, padding="same", skip_merge="none", norm=norm,
                    upsample=upsample, act_before_norm=act_before_norm, up_activation=True,
                    up_norm=True, bn_epsilon=1e-3)  # fmt: skip
    plan = spec.plan()
    assert [b.name.split(".")[1] for b in plan if b.name.startswith("dec1.")][: len(steps)] == steps
    up_norm = plan[f"dec1.up{'bn' if norm == 'batch' else 'norm'}"]
    assert up_norm.epsilon == 1e-3 and up_norm.out_channels == spec.up_width(1) == 4
    without = spec.replace(up_norm=False).plan()
    assert without.trainable_params == plan.trainable_params - 2 * (4 + 8)  # dec1 + dec2 up norms
