import json
from pathlib import Path

import pytest

from shared.data.embedded_subsets import EMBEDDED_BUDGET_BYTES, PART_FOLDERS, check, rebuild
from shared.data.locations import EMBEDDED_ROOT, data_root


def same_files(first, second) -> list[str]:
    """Relative paths whose bytes differ between two folders, or that only one of them has."""
    names = {
        path.relative_to(root).as_posix()
        for root in (first, second)
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    return sorted(
        name
        for name in names
        if not ((first / name).is_file() and (second / name).is_file())
        or (first / name).read_bytes() != (second / name).read_bytes()
    )


def test_every_embedded_file_matches_its_manifest_entry():
    assert check() == []


def test_embedded_subsets_stay_under_the_budget():
    manifest = json.loads((EMBEDDED_ROOT / "MANIFEST.json").read_text())

    total = sum(entry["bytes"] for entry in manifest["files"].values())
    assert manifest["total_bytes"] == total < EMBEDDED_BUDGET_BYTES
    assert set(manifest["bytes_by_part"]) == set(PART_FOLDERS)
    # every source carries its licence or a note on its terms
    for folder in ("cifar10", "coco-mini", "diffrec", "gsm8k", "math", "ml-100k"):
        assert any(name.startswith(f"{folder}/LICENSE") for name in manifest["files"]), folder
    assert "ctr_samples/scenario_wise_rec/LICENSE" in manifest["files"]


def test_rebuilding_from_the_embedded_subsets_reproduces_them_bit_for_bit(tmp_path):
    # the subsets are a fixed point: cutting them again changes nothing, dates and order included
    rebuild(EMBEDDED_ROOT, tmp_path / "again")

    assert same_files(EMBEDDED_ROOT, tmp_path / "again") == []


def test_partial_rebuild_keeps_the_other_parts(tmp_path):
    out = tmp_path / "partial"
    rebuild(EMBEDDED_ROOT, out, parts=["gsm8k"])
    manifest = rebuild(EMBEDDED_ROOT, out, parts=["ctr"])

    parts = {name.split("/")[0] for name in manifest["files"]}
    assert parts == {"README.md", "gsm8k", "ctr_samples"}
    assert manifest["bytes_by_part"]["cifar10"] == 0
    assert check(out) == []


def test_rebuild_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(ValueError, match="neither empty nor an embedded-subsets folder"):
        rebuild(EMBEDDED_ROOT, tmp_path)
    with pytest.raises(ValueError, match="unknown parts"):
        rebuild(EMBEDDED_ROOT, tmp_path / "new", parts=["imagenet"])


def test_check_reports_altered_and_unlisted_files(tmp_path):
    out = tmp_path / "copy"
    rebuild(EMBEDDED_ROOT, out, parts=["gsm8k"])
    (out / "gsm8k" / "test.jsonl").write_bytes(b"{}\n")
    (out / "gsm8k" / "extra.jsonl").write_bytes(b"{}\n")

    assert check(out) == [
        "gsm8k/test.jsonl: 3 bytes, expected 749738",
        "gsm8k/extra.jsonl: not in the manifest",
    ]


def test_rebuilding_from_the_full_mirror_reproduces_the_embedded_subsets(tmp_path):
    # runs where PAPERSTACK_DATA names a full copy of the offline mirror, or where the
    # mirror sits beside the repository (the layout of paperstack's development machines)
    mirror = data_root()
    beside = Path(__file__).resolve().parents[3] / "shared" / "data"
    if not (mirror / "coco-mini").is_dir() and (beside / "coco-mini").is_dir():
        mirror = beside
    if (
        not (mirror / "cifar10" / "cifar10-jpg.zip").is_file()
        or not (mirror / "coco-mini").is_dir()
    ):
        pytest.skip(f"{mirror} is not a full copy of the offline data mirror")
    if (mirror / "cifar10" / "cifar10-jpg.zip").stat().st_size < 50_000_000:
        pytest.skip(f"{mirror} holds a subset of CIFAR-10, not the mirror's full zip")

    rebuild(mirror, tmp_path / "from-mirror")

    assert same_files(EMBEDDED_ROOT, tmp_path / "from-mirror") == []
