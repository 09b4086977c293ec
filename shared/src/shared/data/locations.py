"""Where datasets live: the data directory, the embedded subsets, and official downloads.

A loader asks for a dataset by the files it needs, relative to a dataset folder
(``cifar10/cifar10-jpg.zip``, ``gsm8k/test.jsonl``). They are looked up, in order:

1. the data directory: ``$PAPERSTACK_DATA``, else ``~/.cache/paperstack/data``
   (``$XDG_CACHE_HOME`` is honoured). Its layout is the one of the offline mirror
   described in the repository README, so ``PAPERSTACK_DATA=/path/to/mirror`` just works;
2. the small real subsets embedded in this package (``shared/embedded``), whose files
   are checked against the SHA-256 sums in ``embedded/MANIFEST.json``;
3. the dataset's official download, saved into the data directory, when the network
   allows.

When all three fail, :class:`DatasetNotFoundError` lists the files expected and where
to put them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

DATA_ENV_VAR = "PAPERSTACK_DATA"
EMBEDDED_ROOT = Path(__file__).resolve().parent.parent / "embedded"
MANIFEST_PATH = EMBEDDED_ROOT / "MANIFEST.json"

Source = Literal["auto", "full", "embedded"]
SOURCES = ("auto", "full", "embedded")


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found in the data directory, the embedded subsets or online."""


class CorruptDataError(ValueError):
    """A dataset file exists but is truncated, corrupt or in the wrong format."""


def data_root() -> Path:
    """The data directory: ``$PAPERSTACK_DATA`` or ``<user cache>/paperstack/data``."""
    configured = os.environ.get(DATA_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "paperstack" / "data"


def embedded_manifest() -> dict[str, dict]:
    """``{relative path: {"sha256", "bytes", "source"}}`` for every embedded file."""
    # read from EMBEDDED_ROOT at call time, so a test can point it at a copy
    manifest = EMBEDDED_ROOT / MANIFEST_PATH.name
    if not manifest.exists():
        return {}
    return _read_manifest(manifest, manifest.stat().st_mtime_ns)


@cache
def _read_manifest(manifest: Path, mtime_ns: int) -> dict[str, dict]:
    return json.loads(manifest.read_text())["files"]


def sha256_of(path: Path) -> str:
    return _digest_of(path, hashlib.sha256())


def md5_of(path: Path) -> str:
    return _digest_of(path, hashlib.md5())


def _digest_of(path: Path, digest) -> str:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@cache
def _verified(path: Path, expected_sha256: str, mtime_ns: int) -> bool:
    return sha256_of(path) == expected_sha256


def verify_embedded(relative: str) -> Path:
    """The embedded file ``relative``, after checking its size and SHA-256 against the manifest."""
    entry = embedded_manifest().get(relative)
    path = EMBEDDED_ROOT / relative
    if entry is None or not path.exists():
        raise DatasetNotFoundError(f"{relative} is not among the embedded subsets")
    size = path.stat().st_size
    if size != entry["bytes"] or not _verified(path, entry["sha256"], path.stat().st_mtime_ns):
        raise CorruptDataError(
            f"embedded file {path} does not match its checksum in {MANIFEST_PATH.name} "
            f"({size} bytes, expected {entry['bytes']}): it is truncated or was modified. "
            "Restore it with `git checkout -- <path>` or rebuild the subsets with "
            "`uv run shared rebuild-data --from <offline mirror>`."
        )
    return path


@dataclass(frozen=True)
class Download:
    """An official source for one file of a dataset."""

    url: str
    target: str  # path relative to the data directory
    sha256: str | None = None
    md5: str | None = None  # for sources that publish only an MD5 sum
    unpack: Callable[[Path, Path], None] | None = None  # (archive, data directory) -> None


@dataclass(frozen=True)
class DatasetSpec:
    """What a loader needs on disk: any one of ``layouts`` (each a list of relative paths)."""

    name: str
    layouts: Sequence[Sequence[str]]
    embedded: Sequence[str] = ()
    downloads: Sequence[Download] = field(default_factory=tuple)
    note: str = ""  # where to get the files by hand, shown when nothing is found

    def expected(self) -> str:
        options = [" + ".join(layout) for layout in self.layouts]
        return "\n".join(f"  - {option}" for option in options)


@dataclass(frozen=True)
class Located:
    """The resolved files of a dataset and where they came from."""

    root: Path
    files: tuple[Path, ...]
    origin: Literal["data-dir", "embedded", "downloaded"]

    @property
    def is_subset(self) -> bool:
        return self.origin == "embedded"


def _first_complete_layout(root: Path, spec: DatasetSpec) -> tuple[Path, ...] | None:
    for layout in spec.layouts:
        paths = tuple(root / relative for relative in layout)
        if all(path.exists() for path in paths):
            return paths
    return None


def _download(spec: DatasetSpec, root: Path) -> tuple[Path, ...] | None:
    if not spec.downloads:
        return None
    try:
        for item in spec.downloads:
            target = root / item.target
            if target.exists():
                continue
            log.info("downloading %s from %s", spec.name, item.url)
            target.parent.mkdir(parents=True, exist_ok=True)
            # download to a temporary file first so an interrupted download leaves nothing behind
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                with urllib.request.urlopen(item.url, timeout=60) as response:
                    shutil.copyfileobj(response, tmp)
                tmp_path = Path(tmp.name)
            if (item.sha256 is not None and sha256_of(tmp_path) != item.sha256) or (
                item.md5 is not None and md5_of(tmp_path) != item.md5
            ):
                tmp_path.unlink()
                raise CorruptDataError(
                    f"download of {item.url} does not match its published checksum; "
                    "try again, or fetch the file by hand and put it at "
                    f"{target}"
                )
            os.replace(tmp_path, target)
            if item.unpack is not None:
                item.unpack(target, root)
    except OSError as error:
        log.info("could not download %s: %s", spec.name, error)
        return None
    return _first_complete_layout(root, spec)


def locate(spec: DatasetSpec, source: Source = "auto", download: bool = True) -> Located:
    """Find the files of ``spec``: data directory, then embedded subset, then download.

    ``source="full"`` skips the embedded subset; ``source="embedded"`` uses only it.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    root = data_root()
    if source in ("auto", "full"):
        found = _first_complete_layout(root, spec)
        if found is not None:
            log.info("%s: using %s", spec.name, ", ".join(str(path) for path in found))
            return Located(root, found, "data-dir")
    if source in ("auto", "embedded") and spec.embedded:
        try:
            files = tuple(verify_embedded(relative) for relative in spec.embedded)
        except DatasetNotFoundError:
            files = ()
        if files:
            log.info(
                "%s: using the embedded subset (set %s to a folder with the full files)",
                spec.name,
                DATA_ENV_VAR,
            )
            return Located(EMBEDDED_ROOT, files, "embedded")
    if source in ("auto", "full") and download:
        found = _download(spec, root)
        if found is not None:
            return Located(root, found, "downloaded")
    where = f"{root} (the data directory; set {DATA_ENV_VAR} to change it)"
    raise DatasetNotFoundError(
        f"dataset {spec.name!r} not found. Expected, under {where}, one of:\n"
        f"{spec.expected()}\n"
        + (f"{spec.note}\n" if spec.note else "")
        + ("The embedded subset was not requested." if source == "full" else "")
    )
