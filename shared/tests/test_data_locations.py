import hashlib
import json
import shutil

import pytest

from shared.data import locations
from shared.data.cifar10 import load_cifar10
from shared.data.locations import (
    EMBEDDED_ROOT,
    CorruptDataError,
    DatasetNotFoundError,
    DatasetSpec,
    Download,
    locate,
)
from shared.data.math_text import load_gsm8k


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PAPERSTACK_DATA", str(root))
    return root


@pytest.fixture
def embedded_copy(tmp_path, monkeypatch):
    """A copy of the manifest and the GSM8K subset in place of the package's embedded folder."""
    root = tmp_path / "embedded"
    (root / "gsm8k").mkdir(parents=True)
    shutil.copy(EMBEDDED_ROOT / "MANIFEST.json", root / "MANIFEST.json")
    shutil.copy(EMBEDDED_ROOT / "gsm8k" / "test.jsonl", root / "gsm8k" / "test.jsonl")
    monkeypatch.setattr(locations, "EMBEDDED_ROOT", root)
    return root


def test_data_directory_takes_precedence_over_the_embedded_subset(data_dir):
    row = {"question": "2+2?", "answer": "#### 4"}
    (data_dir / "gsm8k").mkdir()
    (data_dir / "gsm8k" / "test.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")

    assert len(load_gsm8k("test", download=False)) == 2
    assert len(load_gsm8k("test", source="embedded")) == 1319


def test_a_truncated_embedded_file_fails_its_checksum(data_dir, embedded_copy):
    assert len(load_gsm8k("test", download=False)) == 1319
    subset = embedded_copy / "gsm8k" / "test.jsonl"
    subset.write_bytes(subset.read_bytes()[:-1000])

    with pytest.raises(CorruptDataError, match=r"gsm8k/test\.jsonl does not match its checksum"):
        load_gsm8k("test", download=False)


def test_an_edited_embedded_file_of_the_same_size_fails_its_checksum(data_dir, embedded_copy):
    subset = embedded_copy / "gsm8k" / "test.jsonl"
    content = bytearray(subset.read_bytes())
    content[100] ^= 1
    subset.write_bytes(bytes(content))

    with pytest.raises(CorruptDataError, match="truncated or was modified"):
        load_gsm8k("test", source="embedded")


def test_missing_dataset_error_names_the_expected_files_and_where_to_put_them(data_dir):
    with pytest.raises(DatasetNotFoundError) as raised:
        load_cifar10("test", source="full", download=False)

    message = str(raised.value)
    assert str(data_dir) in message
    assert "PAPERSTACK_DATA" in message
    assert (
        "cifar10/cifar-10-batches-py/test_batch + cifar10/cifar-10-batches-py/batches.meta"
        in message
    )
    assert "cifar10/test" in message
    assert "cifar10/cifar10-jpg.zip" in message


def test_without_data_directory_or_embedded_subset_the_dataset_is_not_found(
    data_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(locations, "EMBEDDED_ROOT", tmp_path / "nothing-embedded")

    with pytest.raises(DatasetNotFoundError, match=r"gsm8k/test\.jsonl"):
        load_gsm8k("test", download=False)


def test_download_is_checked_against_its_published_md5(data_dir, tmp_path):
    published = tmp_path / "server" / "numbers.txt"
    published.parent.mkdir()
    published.write_text("1 2 3\n")
    digest = hashlib.md5(published.read_bytes()).hexdigest()

    def spec(md5):
        download = Download(url=published.as_uri(), target="numbers/numbers.txt", md5=md5)
        return DatasetSpec(name="numbers", layouts=[["numbers/numbers.txt"]], downloads=[download])

    with pytest.raises(CorruptDataError, match="published checksum"):
        locate(spec("0" * 32))
    assert list((data_dir / "numbers").iterdir()) == []  # nothing half-written is left

    located = locate(spec(digest))
    assert located.origin == "downloaded"
    assert located.files[0].read_text() == "1 2 3\n"


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="source must be one of"):
        load_gsm8k("test", source="online")
