"""Datasets as they ship: the layouts and mask encodings of public segmentation datasets, each
synthesised small here (never the datasets themselves), train without renaming.

Unit tests pair and decode every layout and encoding (no training); one parametrised run of the
documented command (``train.py fit --config configs/folder.yaml --data.root DIR``, in-process)
trains the layouts whose settings flow further than the pairing: JPEG masks, keys and a valid
region, nnU-Net's labels, alpha. The data folder must be untouched after training.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_data import (
    IGNORE_INDEX,
    Layout,
    find_dataset,
    find_test,
    read_mask,
    split_masks,
)
from unet_data.images import image_info, read_image
from unet_data.survey import survey_masks
from unet_spec import get_preset
from unet_train.data import FolderDataModule

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
SPEC = get_preset("modern-small").replace(in_channels=3, depth=2, base_filters=4)


# -- small copies of the layouts as they ship ----------------------------------------------------
def _disc(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(10, size - 10, 2)
    return (yy - cy) ** 2 + (xx - cx) ** 2 < 50


def _photo(rng: np.random.Generator, mask: np.ndarray, channels: int = 3) -> np.ndarray:
    pixels = rng.integers(0, 80, (*mask.shape, channels)).astype(np.uint8)
    pixels[mask] += 120
    return pixels if channels > 1 else pixels[..., 0]


def _save(path: Path, array: np.ndarray, mode: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path, **kw)
    return path


def carvana(root: Path, n: int = 5) -> Path:
    """``train/*.jpg`` + ``train_masks/*_mask.gif`` (0/1 palette GIFs), a ``test/`` without masks."""
    rng = np.random.default_rng(0)
    for i in range(n):
        m = _disc(rng)
        _save(root / "train" / f"car{i}_01.jpg", _photo(rng, m))
        _save(root / "train_masks" / f"car{i}_01_mask.gif", m.astype(np.uint8), "L")
    _save(root / "test" / "car9_01.jpg", _photo(rng, _disc(rng)))
    return root


def kvasir(root: Path, n: int = 5) -> Path:
    """``images/*.jpg`` + ``masks/*.jpg``: RGB JPEG masks, values near 0 and 255."""
    rng = np.random.default_rng(1)
    for i in range(n):
        m = _disc(rng)
        _save(root / "images" / f"cju{i}.jpg", _photo(rng, m))
        white = np.repeat((m * 255).astype(np.uint8)[..., None], 3, axis=-1)
        _save(root / "masks" / f"cju{i}.jpg", white, quality=75)
    return root


def lgg(root: Path, patients: int = 3, slices: int = 2) -> Path:
    """Per-patient folders, ``X_1.tif`` beside ``X_1_mask.tif``."""
    rng = np.random.default_rng(2)
    for p in range(patients):
        folder = root / "kaggle_3m" / f"TCGA_CS_49{p}1_1996"
        for i in range(1, slices + 1):
            m = _disc(rng)
            _save(folder / f"TCGA_CS_49{p}1_1996_{i}.tif", _photo(rng, m))
            _save(folder / f"TCGA_CS_49{p}1_1996_{i}_mask.tif", (m * 255).astype(np.uint8))
    return root


def isic(root: Path, n: int = 5) -> Path:
    """``…_Input/ISIC_x.jpg`` + ``…_GroundTruth/ISIC_x_segmentation.png``, a licence file, and a
    test folder of images only."""
    rng = np.random.default_rng(3)
    images = root / "ISIC2018_Task1-2_Training_Input"
    for i in range(n):
        m = _disc(rng)
        _save(images / f"ISIC_{i:07d}.jpg", _photo(rng, m))
        _save(root / "ISIC2018_Task1_Training_GroundTruth" / f"ISIC_{i:07d}_segmentation.png",
              (m * 255).astype(np.uint8))  # fmt: skip
    (images / "LICENSE.txt").write_text("CC-BY-NC")
    _save(root / "ISIC2018_Task1-2_Test_Input" / "ISIC_0099999.jpg", _photo(rng, _disc(rng)))
    return root


def pet(root: Path, n: int = 5) -> Path:
    """``images/*.jpg`` + ``annotations/trimaps/*.png``: 1 pet, 2 background, 3 border."""
    from scipy.ndimage import binary_dilation

    rng = np.random.default_rng(4)
    for i in range(n):
        m = _disc(rng)
        trimap = np.where(m, 1, 2).astype(np.uint8)
        trimap[binary_dilation(m) & ~m] = 3
        _save(root / "images" / f"Abyssinian_{i}.jpg", _photo(rng, m))
        _save(root / "annotations" / "trimaps" / f"Abyssinian_{i}.png", trimap)
    (root / "annotations" / "list.txt").write_text("Abyssinian_0 1 1 1\n")
    return root


FOV = (np.mgrid[:SIZE, :SIZE] - SIZE // 2) ** 2
FOV = FOV[0] + FOV[1] < 13**2  # DRIVE's round field of view


def drive(root: Path, n: int = 5) -> Path:
    """``training/images/21_training.tif``, ``training/1st_manual/21_manual1.gif`` (the vessels)
    and ``training/mask/21_training_mask.gif`` (the field of view); ``test/`` beside."""
    rng = np.random.default_rng(5)
    for i in range(21, 21 + n):
        m = _disc(rng)
        _save(root / "training" / "images" / f"{i}_training.tif", _photo(rng, m))
        _save(root / "training" / "1st_manual" / f"{i}_manual1.gif", (m * 255).astype(np.uint8))
        _save(root / "training" / "mask" / f"{i}_training_mask.gif", (FOV * 255).astype(np.uint8))
    _save(root / "test" / "images" / "01_test.tif", _photo(rng, _disc(rng)))
    return root


DRIVE_KEYS = {"images": "training/images/{stem}_training.tif",
              "masks": "training/1st_manual/{stem}_manual1.gif", "valid": "training/mask"}  # fmt: skip


def nnunet(root: Path, n: int = 5) -> Path:
    """nnU-Net's raw 2-D natural-image folder: RGB ``imagesTr/case_0000.png``, 0/1 labels, and a
    dataset.json with the labels (an ``ignore`` label too) and the R, G, B channel names."""
    rng = np.random.default_rng(6)
    meta = {"channel_names": {"0": "R", "1": "G", "2": "B"},
            "labels": {"background": 0, "road": 1, "ignore": 2},
            "numTraining": n, "file_ending": ".png"}  # fmt: skip
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(meta))
    for i in range(n):
        m = _disc(rng)
        label = m.astype(np.uint8)
        label[:2] = 2  # a strip of unlabelled pixels
        _save(root / "imagesTr" / f"road_{i:03d}_0000.png", _photo(rng, m))
        _save(root / "labelsTr" / f"road_{i:03d}.png", label)
    return root


def rgba(root: Path, n: int = 5) -> Path:
    """``images/*.png`` with an alpha channel, 0/255 masks."""
    rng = np.random.default_rng(7)
    for i in range(n):
        m = _disc(rng)
        alpha = np.full((SIZE, SIZE, 1), 200, np.uint8)
        _save(root / "images" / f"r{i}.png", np.concatenate([_photo(rng, m), alpha], -1), "RGBA")
        _save(root / "masks" / f"r{i}.png", (m * 255).astype(np.uint8))
    return root


# -- pairing: every layout with no flags ---------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "line", "groups"),
    [
        (carvana, "pairs: train/*.jpg ↔ train_masks/*_mask.gif, 5 pairs", 0),
        (kvasir, "pairs: images/*.jpg ↔ masks/*.jpg, 5 pairs", 0),
        (lgg, "pairs: kaggle_3m/*/*.tif ↔ kaggle_3m/*/*_mask.tif, 6 pairs in 3 subfolders", 3),
        (isic, "pairs: ISIC2018_Task1-2_Training_Input/*.jpg ↔ "
               "ISIC2018_Task1_Training_GroundTruth/*_segmentation.png, 5 pairs", 0),
        (pet, "pairs: images/*.jpg ↔ annotations/trimaps/*.png, 5 pairs", 0),
        (nnunet, "pairs: imagesTr/*_0000.png ↔ labelsTr/*.png, 5 pairs (nnU-Net dataset.json: "
                 "labels background, road, ignore 2; channels R, G, B)", 0),
    ],
    ids=["carvana", "kvasir", "lgg", "isic", "pet", "nnunet"],
)  # fmt: skip
def test_each_layout_pairs_with_no_flags(tmp_path, make, line, groups):
    found = find_dataset(make(tmp_path / "d"))
    assert found.line.startswith(line), found.line
    pairs = found.splits["all"]
    assert all(p.image.is_file() and p.mask.is_file() and p.image != p.mask for p in pairs)
    # Each mask is its image's: the same stem, or the stem plus the form the line names.
    for p in pairs:
        image_stem = p.image.stem.removesuffix("_0000")
        assert p.mask.stem in {image_stem + f for f in ("", "_mask", "_segmentation")}
    # Folders named test are the test split, never training data.
    assert not any("test" in p.image.relative_to(found.root).as_posix().lower() for p in pairs)
    assert len({p.group for p in pairs if p.group}) == groups


def test_per_subject_folders_are_the_groups_of_a_grouped_split(tmp_path):
    root = lgg(tmp_path / "d", patients=4)
    data = FolderDataModule(str(root), split="group", val_fraction=0.25, crop_size=32)
    data.attach_spec(SPEC)
    data.setup("fit")
    assert len(data.held_out_groups) == 1 and data.held_out_groups[0].startswith("TCGA_CS_49")
    held = data.held_out_groups[0]
    assert {Path(n).parent.name for n, _, _ in data.val_samples} == {held}
    assert held not in {Path(n).parent.name for n, _, _ in data.train_samples}


def test_drive_needs_its_keys_and_names_them(tmp_path):
    root = drive(tmp_path / "d")
    with pytest.raises(ValueError) as err:  # mask/ pairs by _mask: the field of view, not vessels
        find_dataset(root)
    line = str(err.value)
    assert "training/mask/*_mask.gif (5 pairs)" in line and "training/1st_manual/" in line
    assert "data.files.masks" in line and "data.files.valid" in line and "\n" not in line
    found = find_dataset(root, Layout(**DRIVE_KEYS))
    assert found.line == (
        "pairs: training/images/{stem}_training.tif ↔ training/1st_manual/{stem}_manual1.gif, "
        "5 pairs, valid regions training/mask/*_mask.gif"
    )
    for p in found.splits["all"]:
        number = p.image.name.split("_")[0]
        assert (p.mask.name, p.valid.name) == (
            f"{number}_manual1.gif",
            f"{number}_training_mask.gif",
        )


def test_a_folder_that_pairs_two_ways_names_the_key(tmp_path):
    root = carvana(tmp_path / "d")
    for f in (root / "train").iterdir():  # Carvana's train_hq/: the same names, larger
        _save(root / "train_hq" / f.name, np.asarray(Image.open(f)))
    with pytest.raises(ValueError, match=r"pair two ways: .*train_masks.*name the one that holds "
                       r"the masks with data\.files\.images"):  # fmt: skip
        find_dataset(root)
    found = find_dataset(root, Layout(images="train_hq"))
    assert {p.image.parent.name for p in found.pairs} == {"train_hq"}


def test_unpaired_files_are_an_error_or_skipped_with_a_count(tmp_path):
    root = carvana(tmp_path / "d")
    (root / "train_masks" / "car1_01_mask.gif").unlink()
    (root / "train_masks" / "car3_01_mask.gif").unlink()
    _save(root / "train_masks" / "lost_mask.gif", np.zeros((SIZE, SIZE), np.uint8))
    with pytest.raises(ValueError) as err:
        find_dataset(root)
    line = str(err.value)
    assert line.startswith(f"{root}/train/car1_01.jpg: no mask with the stem 'car1_01'")
    assert "2 image(s) without a mask, 1 mask(s) without an image" in line
    assert "data.files.unpaired: skip" in line
    found = find_dataset(root, Layout(unpaired="skip"))
    assert len(found.pairs) == 3
    assert found.notes == [
        "unpaired: skipped 2 image(s) without a mask (car1_01.jpg, car3_01.jpg) and 1 mask(s) "
        "without an image (lost_mask.gif) (data.files.unpaired: skip)"
    ]
    with pytest.raises(ValueError, match=r"data.files.unpaired must be error or skip"):
        Layout(unpaired="ignore")


def test_pairs_lists_csv_and_decathlon_datalist(tmp_path):
    root = kvasir(tmp_path / "d", n=6)
    names = sorted(p.name for p in (root / "images").iterdir())
    rows = ["image,mask,split"] + [
        f"images/{n},masks/{n},{'val' if k == 5 else 'train'}" for k, n in enumerate(names)
    ]
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    found = find_dataset(root / "pairs.csv")
    assert found.line == "pairs: pairs.csv (image,mask), train 5, val 1"
    assert found.splits["val"][0].mask == root / "masks" / names[5]
    entry = lambda n: {"image": f"./images/{n}", "label": f"./masks/{n}"}  # noqa: E731
    datalist = {"training": [entry(n) for n in names[:4]],
                "validation": [entry(n) for n in names[4:5]],
                "test": [entry(names[5]), {"image": "images/unlabelled.jpg"}]}  # fmt: skip
    (root / "datalist.json").write_text(json.dumps(datalist))
    found = find_dataset(root / "datalist.json")
    assert found.line == "pairs: datalist.json (Decathlon datalist), train 4, val 1, test 1"
    assert find_test(root / "datalist.json")[0].image == root / "images" / names[5]
    (root / "bad.csv").write_text("img,seg\na.png,b.png\n")
    with pytest.raises(ValueError, match=r"bad\.csv: a pairs CSV needs .* \(found: img, seg\)"):
        find_dataset(root / "bad.csv")
    (root / "gone.csv").write_text("image,mask\nimages/none.jpg,masks/none.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"gone\.csv:2: .*images/none\.jpg: no such file"):
        find_dataset(root / "gone.csv")


def test_nnunet_cases_of_several_channel_files_are_refused(tmp_path):
    root = nnunet(tmp_path / "d", n=2)
    _save(root / "imagesTr" / "road_000_0001.png", np.zeros((SIZE, SIZE), np.uint8))
    with pytest.raises(
        ValueError, match=r"case 'road_000' has 2 channel files .*one file per case"
    ):
        find_dataset(root)


def test_prediction_sets_the_masks_beside_their_images_aside(tmp_path, caplog):
    root = lgg(tmp_path / "d")
    files = sorted((root / "kaggle_3m").rglob("*.tif"))
    images, masks, forms = split_masks(files)
    assert forms == ["*_mask.tif"] and len(images) == len(masks) == 6
    assert all(m.stem.endswith("_mask") for m in masks)
    folders = [str(f) for f in sorted((root / "kaggle_3m").iterdir())]
    data = FolderDataModule(str(root), crop_size=32, predict_images=folders)
    data.attach_spec(SPEC)
    with caplog.at_level(logging.INFO):
        data.setup("predict")
    assert len(data.predict_samples) == 6
    assert "predict: skipped 6 mask file(s) among data.predict_images (*_mask.tif" in caplog.text


def test_unet_predict_skips_the_masks_and_says_so(tmp_path, capsys):
    from unet_cli.main import build_parser
    from unet_spec import save_weights
    from unet_torch.model import UNet, canonical_state

    spec = SPEC.replace(num_classes=2)
    weights = save_weights(canonical_state(UNet(spec)), spec, tmp_path / "w.safetensors")
    folder = sorted((lgg(tmp_path / "d") / "kaggle_3m").iterdir())[0]
    args = build_parser().parse_args(
        ["predict", str(folder), "--weights", str(weights), "--out", str(tmp_path / "o")]
    )
    rc = args._run(args)  # the subcommand itself: main() would also set the process's malloc
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "unet predict: note: skipped 2 mask file(s) (*_mask.tif beside their images)" in err
    assert sorted(p.name for p in (tmp_path / "o").glob("*_mask.png")) == [
        "TCGA_CS_4901_1996_1_mask.png", "TCGA_CS_4901_1996_2_mask.png"]  # fmt: skip


# -- masks as encoded ---------------------------------------------------------------------------------
def _jpeg(array: np.ndarray, quality: int = 75) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


def test_jpeg_masks_are_thresholded_between_their_two_levels(tmp_path):
    root = kvasir(tmp_path / "d")
    masks = sorted((root / "masks").iterdir())
    raw = np.stack([np.asarray(Image.open(m).convert("L")) for m in masks])
    assert len(np.unique(raw)) > 20  # JPEG noise: dozens of values, not 2
    survey = survey_masks(masks)
    assert (survey.encoding, survey.num_classes, survey.snap) == ("binary", 2, True)
    moved = float(np.mean((raw != 0) & (raw != 255)))
    assert survey.note == (f"masks: JPEG-compressed masks, thresholded at 127.5 (levels 0 and "
                           f"255); {moved:.1%} of pixels moved")  # fmt: skip
    options = {"num_classes": 2, "encoding": survey.encoding, "value_map": survey.value_map}
    for path, grey in zip(masks, raw, strict=True):
        np.testing.assert_array_equal(read_mask(path, snap=True, **options), grey > 127.5)
    # Asked for more classes than the clusters hold: refused, naming the cause.
    with pytest.raises(
        ValueError,
        match=r"data\.num_classes=31 but the JPEG-compressed masks "
        r"cluster at 2 level\(s\) \(0, 255\); compression noise is not a class",
    ):
        survey_masks(masks, num_classes=31)  # fmt: skip


def test_jpeg_masks_of_three_levels_snap_to_their_classes(tmp_path):
    rng = np.random.default_rng(8)
    paths = []
    for i in range(4):
        levels = np.zeros((64, 64), np.uint8)
        levels[8:40, 8:40] = 128
        levels[30:56, 30:56] = 255
        levels = np.roll(levels, rng.integers(-6, 6, 2), axis=(0, 1))
        paths.append(_save(tmp_path / f"m{i}.jpg", _jpeg(levels)))
    survey = survey_masks(paths)
    assert (survey.encoding, survey.num_classes) == ("index", 3)
    assert survey.value_map == {0: 0, 128: 1, 255: 2} and survey.snap
    mask = read_mask(paths[0], 3, survey.encoding, survey.value_map, snap=True)
    assert set(np.unique(mask).tolist()) == {0, 1, 2}
    # Class ids too close together for JPEG (0, 1, 2): one cluster, refused.
    ids = (np.arange(64 * 64).reshape(64, 64) // 700 % 3).astype(np.uint8)
    close = [_save(tmp_path / f"c{i}.jpg", _jpeg(np.roll(ids, i))) for i in range(2)]
    with pytest.raises(ValueError, match=r"one cluster .* do not survive JPEG"):
        survey_masks(close)


def test_colour_jpeg_masks_snap_to_their_colours(tmp_path):
    paths, written = [], []
    for i in range(3):
        colours = np.zeros((64, 64, 3), np.uint8)
        colours[4 + i : 30, 4:50] = (200, 30, 30)
        colours[36:60, 10 + i : 40] = (30, 30, 200)
        written.append(colours)
        paths.append(_save(tmp_path / f"m{i}.jpg", _jpeg(colours, 90)))
    survey = survey_masks(paths)
    assert (survey.encoding, survey.num_classes, survey.snap) == ("palette", 3, True)
    # The levels are the colours written, within JPEG's noise; black first, as for exact masks.
    expected = np.array([[0, 0, 0], [30, 30, 200], [200, 30, 30]])
    assert np.abs(np.array(survey.palette) - expected).max() <= 6, survey.palette
    mask = read_mask(paths[0], 3, "palette", palette=survey.palette, snap=True)
    truth = np.zeros((64, 64), np.int64)
    truth[(written[0] == (30, 30, 200)).all(-1)] = 1
    truth[(written[0] == (200, 30, 30)).all(-1)] = 2
    assert np.mean(mask == truth) > 0.97  # edges of a JPEG may blur a pixel or two


def test_resampled_lossless_masks_are_refused_with_the_cause(tmp_path):
    # A 0/255 mask resized with interpolation: 0 and 255, and values between them at the edge.
    yy, xx = np.mgrid[:200, :200]
    sharp = (((yy - 90) ** 2 + (xx - 110) ** 2) < 60**2).astype(np.uint8) * 255
    smooth = np.asarray(Image.fromarray(sharp).resize((150, 150), Image.BILINEAR))
    path = _save(tmp_path / "m.png", smooth)
    with pytest.raises(ValueError, match=r"m\.png: mask values look like 2 level\(s\) \(0, 255\) "
                       r"with \d+ other values between them .* resampled masks\?"):  # fmt: skip
        survey_masks([path])
    assert survey_masks([path], encoding="binary")[:2] == ("binary", 2)  # the threshold asked for


def test_ids_from_1_are_refused_and_the_pet_recipe_trains_two_classes(tmp_path):
    root = pet(tmp_path / "d")
    masks = [p.mask for p in find_dataset(root).pairs]
    with pytest.raises(ValueError) as err:
        survey_masks(masks)
    line = str(err.value)
    assert "mask values 1, 2, 3 start at 1: class 0 would never occur" in line
    assert "data.masks.value_map to count from 0 (e.g. {1: 0, 2: 1, 3: 2})" in line
    assert "data.masks.ignore_value" in line and "docs/data.md" in line
    # The recipe of docs/data.md: background 0, pet 1, the border ignored.
    recipe = {"value_map": {1: 1, 2: 0}, "ignore_value": 3}
    assert survey_masks(masks, **recipe)[:2] == ("index", 2)
    trimap = np.asarray(Image.open(masks[0]))
    mask = read_mask(masks[0], 2, **recipe)
    np.testing.assert_array_equal(mask, np.choose(trimap - 1, [1, 0, IGNORE_INDEX]))


# -- valid regions: outside ignored by the loss and the metrics ------------------------------------
def test_outside_the_valid_region_counts_for_nothing(tmp_path):
    from unet_train.losses import SegmentationLoss
    from unet_train.system import SegmentationSystem

    root = drive(tmp_path / "d")
    data = FolderDataModule(str(root), files=Layout(**DRIVE_KEYS), crop_size=32)
    data.attach_spec(SPEC)
    data.setup("fit")
    samples = list(data.train_samples) + list(data.val_samples)
    for _, _, mask in samples:
        assert (mask[~FOV] == IGNORE_INDEX).all() and (mask[FOV] != IGNORE_INDEX).all()
    _, _, target = samples[0]
    target = torch.from_numpy(target)[None]
    logits = torch.randn(1, 2, SIZE, SIZE)
    elsewhere = logits.clone()
    elsewhere[:, :, torch.from_numpy(~FOV)] *= -5  # other predictions outside only
    loss = SegmentationLoss("ce_dice", None, IGNORE_INDEX)
    assert torch.equal(loss(logits, target), loss(elsewhere, target))
    system = SegmentationSystem(preset="modern-small", spec={"depth": 2, "base_filters": 4})
    scores = []
    for x in (logits, elsewhere):
        system.val_metrics.reset()
        system.val_metrics.update(x.argmax(1), target)
        scores.append({k: v.tolist() for k, v in system.val_metrics.compute().items()})
    assert scores[0] == scores[1]


# -- images as they are --------------------------------------------------------------------------------
MODES = ["1", "L", "P", "P+transparency", "LA", "La", "PA", "I", "I;16", "F", "RGB", "RGBA",
         "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_every_image_mode_reads_as_grey_or_rgb(tmp_path, monkeypatch, mode):
    import unet_data.images

    rng = np.random.default_rng(9)
    pixels = rng.integers(0, 256, (6, 7, 4)).astype(np.uint8)
    img = Image.fromarray(pixels, "RGBA").convert(mode.split("+")[0].replace("La", "LA"))
    if mode == "La":
        img = img.convert("La")
    if mode == "P+transparency":
        img.info["transparency"] = 0
    suffix = {"CMYK": ".jpg", "YCbCr": ".jpg", "LAB": ".tif", "I": ".tif", "F": ".tif"}
    path = tmp_path / f"x{suffix.get(mode, '.png')}"
    try:
        img.save(path)
    except (OSError, ValueError, KeyError):  # no file format holds it: read from memory
        path = tmp_path / "x.png"
        monkeypatch.setattr(unet_data.images, "open_image", lambda *args, **kw: img.copy())
    info = image_info(path)
    image = read_image(path, info.channels)  # no error: the channels the header says
    assert image.shape == (info.channels, 6, 7) and image.dtype == np.float32
    # Alpha is never a channel; a TIFF's samples are read as stored.
    assert info.channels == (1 if mode in ("1", "L", "LA", "La", "I", "I;16", "F") else 3)


def test_alpha_is_dropped_or_composited(tmp_path):
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[..., 0] = 200
    pixels[..., 3] = [[255, 0], [128, 0]]
    path = _save(tmp_path / "a.png", pixels, "RGBA")
    assert image_info(path)[2:] == (3, 1, "RGBA", True)
    np.testing.assert_allclose(read_image(path, 3)[0], 200 / 255)  # alpha dropped
    white = read_image(path, 3, background=[255, 255, 255]) * 255
    a = 128 / 255
    np.testing.assert_array_equal(white[0], [[200, 255], [np.rint(200 * a + 255 * (1 - a)), 255]])
    np.testing.assert_array_equal(white[1], [[0, 255], [np.rint(255 * (1 - a)), 255]])


def test_four_channel_images_augment_without_error():
    from unet_train.datasets import Augmentation

    torch.manual_seed(0)
    augment = Augmentation(flips=False, rot90=False, jitter=0.3).build(4)
    image = torch.rand(4, 16, 16) * 0.5
    out = augment(image)
    factor = out / image
    assert out.shape == (4, 16, 16) and torch.allclose(factor, factor.flatten()[0])
    assert abs(float(factor.flatten()[0]) - 1.0) > 1e-4  # jittered, every channel alike


# -- the documented command, end to end ---------------------------------------------------------------
def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "/" for p in sorted(folder.rglob("*"))}  # fmt: skip


SHORT = ["--trainer.max_epochs", "1", "--data.samples_per_epoch", "2", "--data.batch_size", "2",
         "--model.spec", "{depth: 2, base_filters: 4}", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--artifacts.keras_export", "false",
         "--artifacts.overlays", "1"]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "keys", "said"),
    [
        (kvasir, [], "masks: JPEG-compressed masks, thresholded at 127.5"),
        (drive, [f"--data.files.{k}={v}" for k, v in DRIVE_KEYS.items()],
         "valid regions training/mask/*_mask.gif"),
        (nnunet, [], "labels background, road, ignore 2"),
        (rgba, [], "data: 5 of 5 images have an alpha channel: dropped"),
    ],
    ids=["kvasir-jpeg-masks", "drive-keys-valid", "nnunet", "rgba"],
)  # fmt: skip
def test_the_layout_trains_with_the_documented_command(tmp_path, monkeypatch, caplog, make, keys,
                                                       said):  # fmt: skip
    from unet_runtime.cache import CACHE_ENV_VAR
    from unet_train.cli import main

    data = make(tmp_path / "mydata")
    before = _snapshot(data)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", ["train.py"])  # the command is the one given below
    with caplog.at_level(logging.INFO):
        rc = main(["fit", "--config", str(REPO / "configs" / "folder.yaml"), "--data.root",
                   str(data), *keys, *SHORT])  # fmt: skip
    assert rc == 0
    assert said in caplog.text and "pairs: " in caplog.text
    run = tmp_path / "runs" / "mydata" / "version_0"
    assert (run / "metrics.json").is_file() and (run / "model.safetensors").is_file()
    assert _snapshot(data) == before  # nothing written into the data folder
