import logging
import shutil

import pytest

from shared.data.coco import load_coco_captions
from shared.data.locations import EMBEDDED_ROOT


def test_embedded_coco_mini_has_its_159_images_and_795_captions():
    train = load_coco_captions("train", source="embedded")
    val = load_coco_captions("val", source="embedded")

    assert (len(train), len(val)) == (80, 79)
    assert sum(len(item.captions) for item in train + val) == 795
    first = train[0]
    assert first.image_id == 790
    assert first.path.name == "000000000790.jpg"
    assert first.captions[0] == "a family is sitting down at a table to have cake"
    assert [item.image_id for item in val] == sorted(item.image_id for item in val)


def test_embedded_images_are_at_most_256_pixels_and_match_their_annotated_size():
    for item in load_coco_captions("val", source="embedded")[:10]:
        image = item.open()
        assert image.mode == "RGB"
        assert image.size == (item.width, item.height)
        assert max(image.size) == 256


def test_annotated_images_missing_on_disk_are_skipped_with_one_warning(
    tmp_path, monkeypatch, caplog
):
    # a data directory holding coco-mini with two of its images gone
    coco = tmp_path / "data" / "coco-mini"
    shutil.copytree(EMBEDDED_ROOT / "coco-mini", coco)
    gone = sorted((coco / "val2017").iterdir())[:2]
    for path in gone:
        path.unlink()
    monkeypatch.setenv("PAPERSTACK_DATA", str(tmp_path / "data"))

    with caplog.at_level(logging.WARNING, logger="shared.data.coco"):
        items = load_coco_captions("val", source="full")

    assert len(items) == 77
    assert {item.path.name for item in items}.isdisjoint(path.name for path in gone)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2 of 79" in warnings[0]


def test_full_coco_folder_is_preferred_to_coco_mini(tmp_path, monkeypatch):
    for folder in ("coco", "coco-mini"):
        shutil.copytree(EMBEDDED_ROOT / "coco-mini", tmp_path / "data" / folder)
    monkeypatch.setenv("PAPERSTACK_DATA", str(tmp_path / "data"))

    items = load_coco_captions("train")

    assert items[0].path.parent == tmp_path / "data" / "coco" / "train2017"


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="'train' or 'val'"):
        load_coco_captions("test")
