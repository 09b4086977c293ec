"""MovieLens ratings (Harper and Konstan, 2015) and the DiffRec splits derived from them.

Three formats:

- RecBole atomic files (``ml-100k/ml-100k.inter``, ``.user``, ``.item``): tab-separated with a
  typed header such as ``user_id:token	item_id:token	rating:float	timestamp:float``;
- the original GroupLens ML-1M files (``ml-1m/ratings.dat``, ``users.dat``, ``movies.dat``,
  ``::``-separated);
- DiffRec's preprocessed splits (Wang et al., 2023, "Diffusion Recommender Model"):
  ``diffrec/<name>/{train,valid,test}_list.npy`` holding int64 (user, item) pairs, plus an
  optional ``item_emb.npy`` for L-DiffRec's item clustering.

The first two give :class:`Interactions` with users and items renumbered 0..n-1;
:func:`temporal_split` cuts such a table into train, validation and test by time.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from shared.data.locations import (
    CorruptDataError,
    DatasetSpec,
    Download,
    Source,
    locate,
)

log = logging.getLogger(__name__)

_ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Interactions:
    """User-item interactions with contiguous 0-based ids, and the dataset's own ids behind them."""

    frame: pd.DataFrame  # user, item (int64), then rating (float32), timestamp (int64); file order
    raw_user_ids: pd.Index  # raw_user_ids[u] is the dataset's id of user u
    raw_item_ids: pd.Index  # raw_item_ids[i] is the dataset's id of item i
    users: pd.DataFrame | None = None  # row u describes user u (index "user"); None without a file
    items: pd.DataFrame | None = None  # row i describes item i (index "item"); None without a file
    name: str = ""
    origin: str = ""  # "data-dir", "embedded" or "downloaded"

    @property
    def n_users(self) -> int:
        return len(self.raw_user_ids)

    @property
    def n_items(self) -> int:
        return len(self.raw_item_ids)

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class InteractionSplits:
    """Train, validation and test (user, item) pairs over one id space, as DiffRec stores them."""

    train: torch.Tensor  # (n_train, 2) int64 (user, item)
    valid: torch.Tensor  # (n_valid, 2) int64
    test: torch.Tensor  # (n_test, 2) int64
    n_users: int  # max user id over the three splits + 1, or the declared count
    n_items: int  # max item id over the three splits + 1, or the declared count
    item_emb: torch.Tensor | None = None  # (n_items, dim) float32 item embeddings, if supplied
    name: str = ""
    origin: str = ""

    def frame(self, split: Literal["train", "valid", "test"]) -> pd.DataFrame:
        """One split as a DataFrame with int64 columns user, item."""
        if split not in ("train", "valid", "test"):
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
        pairs = getattr(self, split).numpy()
        return pd.DataFrame({"user": pairs[:, 0], "item": pairs[:, 1]})


# RecBole atomic files


def recbole_spec(name: str) -> DatasetSpec:
    """Where the RecBole atomic files of dataset ``name`` may be found."""
    _check_dataset_name(name)
    inter = f"{name}/{name}.inter"
    embedded = [inter, f"{name}/{name}.user", f"{name}/{name}.item"] if name == "ml-100k" else []
    return DatasetSpec(
        name=f"{name} (RecBole atomic files)",
        layouts=[[inter]],
        embedded=embedded,
        note=(
            f"Convert or download it with RecBole (https://recbole.io/dataset_list.html); the "
            f"optional {name}.user and {name}.item files are read when they sit beside it."
        ),
    )


def load_ml100k(source: Source = "auto") -> Interactions:
    """MovieLens-100K (943 users, 1,682 items, 100,000 ratings) from RecBole's atomic files."""
    return load_recbole_atomic("ml-100k", source=source)


def load_recbole_atomic(name: str, source: Source = "auto") -> Interactions:
    """A dataset in RecBole atomic format: ``<name>.inter`` plus ``.user`` and ``.item`` if present.

    The ``.inter`` file needs ``user_id`` and ``item_id`` fields; ``rating`` and ``timestamp``
    are kept when present. Feature fields keep their RecBole names; ``token_seq`` fields stay
    space-separated strings (a title, or genres such as ``"Animation Children's Comedy"``).
    """
    located = locate(recbole_spec(name), source=source, download=False)
    inter_path = located.files[0]

    # interactions
    inter = read_atomic_file(inter_path)
    missing = {"user_id", "item_id"} - set(inter.columns)
    if missing:
        raise CorruptDataError(f"{inter_path} lacks the fields {sorted(missing)}")
    renamed = inter.rename(columns={"user_id": "user", "item_id": "item"})
    interactions = _renumbered(renamed, name=name, origin=located.origin)

    # user and item features, aligned with the new ids
    folder = inter_path.parent
    for kind, id_field in (("user", "user_id"), ("item", "item_id")):
        path = folder / f"{name}.{kind}"
        if path.exists():
            features = read_atomic_file(path)
            if id_field not in features.columns:
                raise CorruptDataError(f"{path} lacks the field {id_field}")
            raw_ids = interactions.raw_user_ids if kind == "user" else interactions.raw_item_ids
            aligned = _aligned_features(features, id_field, raw_ids, path, kind)
            setattr(interactions, f"{kind}s", aligned)

    log.info(
        "%s: %d interactions, %d users, %d items (%s)",
        name,
        len(interactions),
        interactions.n_users,
        interactions.n_items,
        located.origin,
    )
    return interactions


def read_atomic_file(path: Path) -> pd.DataFrame:
    """One RecBole atomic file as a DataFrame, columns named without their ``:type`` suffix.

    ``token`` and ``token_seq`` fields are strings, ``float`` fields float64; ``float_seq``
    fields stay space-separated strings.
    """
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
    names, types = [], {}
    for field in header:
        name, _, kind = field.partition(":")
        if kind not in _ATOMIC_TYPES:
            raise CorruptDataError(
                f"{path}: header field {field!r} is not name:type with type one of "
                f"{_ATOMIC_TYPES}; is this a RecBole atomic file?"
            )
        names.append(name)
        types[name] = kind

    # read everything as text, then convert the float fields
    frame = pd.read_csv(
        path,
        sep="\t",
        skiprows=1,
        names=names,
        dtype=str,
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
        encoding="utf-8",
    )
    for name, kind in types.items():
        if kind == "float":
            try:
                frame[name] = pd.to_numeric(frame[name].replace("", np.nan))
            except ValueError as error:
                raise CorruptDataError(f"{path}: field {name} is not numeric ({error})") from error
    return frame


# original GroupLens ML-1M files


def _unpack_grouplens_zip(archive: Path, root: Path) -> None:
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(root)


ML1M_DOWNLOAD = Download(
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    target="ml-1m/ml-1m.zip",
    md5="c4d9eecfca2ab87c1945afe126590906",
    unpack=_unpack_grouplens_zip,
)

ML1M_SPEC = DatasetSpec(
    name="MovieLens-1M (GroupLens .dat files)",
    layouts=[["ml-1m/ratings.dat"]],
    downloads=[ML1M_DOWNLOAD],
    note="Get ml-1m.zip from https://grouplens.org/datasets/movielens/1m/ and unzip it.",
)


def load_ml1m(source: Source = "auto", download: bool = True) -> Interactions:
    """MovieLens-1M (6,040 users, 3,706 rated movies, 1,000,209 ratings) from GroupLens's files.

    ``users.dat`` (gender, age, occupation, zip_code) and ``movies.dat`` (title, genres as
    ``"Animation|Children's|Comedy"``) are read when present beside ``ratings.dat``.
    """
    located = locate(ML1M_SPEC, source=source, download=download)
    folder = located.files[0].parent

    # ratings: UserID::MovieID::Rating::Timestamp
    ratings = _read_dat(folder / "ratings.dat", ["user", "item", "rating", "timestamp"])
    for column in ratings.columns:
        ratings[column] = _as_integers(ratings[column], folder / "ratings.dat", column)
    interactions = _renumbered(ratings, name="ml-1m", origin=located.origin)

    # users: UserID::Gender::Age::Occupation::Zip-code; movies: MovieID::Title::Genres
    users_path, movies_path = folder / "users.dat", folder / "movies.dat"
    if users_path.exists():
        users = _read_dat(users_path, ["user_id", "gender", "age", "occupation", "zip_code"])
        users["user_id"] = _as_integers(users["user_id"], users_path, "user_id")
        interactions.users = _aligned_features(
            users, "user_id", interactions.raw_user_ids, users_path, "user"
        )
    if movies_path.exists():
        movies = _read_dat(movies_path, ["item_id", "title", "genres"])
        movies["item_id"] = _as_integers(movies["item_id"], movies_path, "item_id")
        interactions.items = _aligned_features(
            movies, "item_id", interactions.raw_item_ids, movies_path, "item"
        )

    log.info(
        "ml-1m: %d ratings, %d users, %d items (%s)",
        len(interactions),
        interactions.n_users,
        interactions.n_items,
        located.origin,
    )
    return interactions


def _read_dat(path: Path, names: list[str]) -> pd.DataFrame:
    # GroupLens writes ISO-8859-1 ("::" never occurs inside a field), so a tab-separated
    # rewrite lets the fast C parser read it
    text = path.read_bytes().decode("latin-1").replace("::", "\t")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep="\t",
            names=names,
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
        )
    except pd.errors.ParserError as error:
        raise CorruptDataError(
            f"{path}: expected {len(names)} fields per line ({error})"
        ) from error
    incomplete = (frame.isna() | (frame == "")).any(axis=1).to_numpy()
    if incomplete.any():
        line = int(np.flatnonzero(incomplete)[0]) + 1
        raise CorruptDataError(f"{path}: line {line} has fewer than {len(names)} fields")
    return frame


# renumbering and features


def _as_integers(column: pd.Series, path: Path, field: str) -> pd.Series:
    try:
        return pd.to_numeric(column).astype(np.int64)
    except (ValueError, TypeError) as error:
        raise CorruptDataError(f"{path}: field {field} is not an integer ({error})") from error


def _as_ids(column: pd.Series) -> pd.Series:
    """Raw ids as int64 when every one is an integer (so they sort numerically), else as strings."""
    if column.dtype.kind in "iu":
        return column.astype(np.int64)
    text = column.astype(str)
    if text.str.fullmatch(r"-?\d+").all():
        return text.astype(np.int64)
    return text


def _renumbered(frame: pd.DataFrame, name: str, origin: str) -> Interactions:
    """Interactions with users and items numbered 0..n-1 in the order of their sorted raw ids."""
    users, raw_user_ids = pd.factorize(_as_ids(frame["user"]), sort=True)
    items, raw_item_ids = pd.factorize(_as_ids(frame["item"]), sort=True)
    columns = {"user": users.astype(np.int64), "item": items.astype(np.int64)}
    if "rating" in frame:
        columns["rating"] = frame["rating"].to_numpy(dtype=np.float32)
    if "timestamp" in frame:
        columns["timestamp"] = frame["timestamp"].to_numpy(dtype=np.int64)
    return Interactions(
        frame=pd.DataFrame(columns),
        raw_user_ids=pd.Index(raw_user_ids, name="user_id"),
        raw_item_ids=pd.Index(raw_item_ids, name="item_id"),
        name=name,
        origin=origin,
    )


def _aligned_features(
    features: pd.DataFrame, id_field: str, raw_ids: pd.Index, path: Path, kind: str
) -> pd.DataFrame:
    """Feature rows reordered so that row k describes the k-th renumbered user or item."""
    features = features.assign(**{id_field: _as_ids(features[id_field])})
    duplicated = features[id_field].duplicated()
    if duplicated.any():
        first = features[id_field][duplicated].iloc[0]
        raise CorruptDataError(f"{path}: {kind} {first!r} is described twice")
    indexed = features.set_index(id_field)
    without = raw_ids.difference(indexed.index)
    if len(without):
        log.warning("%s: no features for %d %ss that have interactions", path, len(without), kind)
    unused = len(indexed.index.difference(raw_ids))
    if unused:
        log.info("%s: %d %ss without interactions are left out", path, unused, kind)
    aligned = indexed.reindex(raw_ids).reset_index()
    aligned.index.name = kind
    return aligned


# DiffRec splits


def diffrec_spec(name: str) -> DatasetSpec:
    """Where the DiffRec split ``diffrec/<name>/`` may be found (only ml-1m_clean is embedded)."""
    _check_dataset_name(name)
    splits = [f"diffrec/{name}/{split}_list.npy" for split in ("train", "valid", "test")]
    embedded = [*splits, f"diffrec/{name}/item_emb.npy"] if name == "ml-1m_clean" else []
    return DatasetSpec(
        name=f"DiffRec {name}",
        layouts=[splits],
        embedded=embedded,
        note=(
            "The DiffRec authors publish their splits as datasets/<name>.rar in "
            "https://github.com/YiyanXu/DiffRec; unpack one into diffrec/<name>/."
        ),
    )


def load_diffrec(
    name: str = "ml-1m_clean",
    source: Source = "auto",
    n_users: int | None = None,
    n_items: int | None = None,
) -> InteractionSplits:
    """DiffRec's temporal train/valid/test (user, item) splits: ``ml-1m_clean``, ``yelp_clean``, ...

    Ids are checked: none negative, none at or above ``n_users``/``n_items`` when those are
    declared, and ``item_emb.npy`` (when present) with one row per item.
    """
    located = locate(diffrec_spec(name), source=source, download=False)

    # the three splits
    pairs = {}
    for split, path in zip(("train", "valid", "test"), located.files[:3], strict=True):
        pairs[split] = _read_pairs(path)

    # id ranges: declared, else the largest id seen + 1
    stacked = np.concatenate(list(pairs.values()))
    seen_users = int(stacked[:, 0].max()) + 1 if len(stacked) else 0
    seen_items = int(stacked[:, 1].max()) + 1 if len(stacked) else 0
    for what, declared, seen in (("user", n_users, seen_users), ("item", n_items, seen_items)):
        if declared is not None and seen > declared:
            column = 0 if what == "user" else 1
            split = next(s for s, p in pairs.items() if len(p) and p[:, column].max() >= declared)
            raise CorruptDataError(
                f"{located.files[0].parent / f'{split}_list.npy'} has {what} id {seen - 1}, "
                f"outside the declared n_{what}s={declared}; pass n_{what}s>={seen} or None"
            )
    n_users = seen_users if n_users is None else n_users
    n_items = seen_items if n_items is None else n_items

    # item embeddings for L-DiffRec: one row per item
    item_emb = None
    emb_path = located.files[0].parent / "item_emb.npy"
    if emb_path.exists():
        emb = np.load(emb_path, allow_pickle=False)
        if emb.ndim != 2 or len(emb) != n_items:
            raise CorruptDataError(
                f"{emb_path} has shape {emb.shape}, but the splits have {n_items} items "
                f"(ids 0..{n_items - 1}); the embeddings belong to another split, or pass "
                "n_items to match them"
            )
        item_emb = torch.from_numpy(emb.astype(np.float32, copy=False))

    splits = InteractionSplits(
        train=torch.from_numpy(pairs["train"]),
        valid=torch.from_numpy(pairs["valid"]),
        test=torch.from_numpy(pairs["test"]),
        n_users=n_users,
        n_items=n_items,
        item_emb=item_emb,
        name=name,
        origin=located.origin,
    )
    log.info(
        "DiffRec %s: %d users, %d items, %d / %d / %d train / valid / test pairs (%s)",
        name,
        n_users,
        n_items,
        len(splits.train),
        len(splits.valid),
        len(splits.test),
        located.origin,
    )
    return splits


def _read_pairs(path: Path) -> np.ndarray:
    try:
        pairs = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise CorruptDataError(f"{path} is not a plain .npy array ({error})") from error
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.dtype.kind not in "iu":
        raise CorruptDataError(
            f"{path} holds {pairs.dtype} {pairs.shape}, expected integer (user, item) pairs (n, 2)"
        )
    pairs = pairs.astype(np.int64, copy=False)
    negative = np.flatnonzero((pairs < 0).any(axis=1))
    if len(negative):
        row = negative[0]
        raise CorruptDataError(
            f"{path} has {len(negative)} pairs with a negative id, the first at row {row}: "
            f"{pairs[row].tolist()}; ids must be 0-based indices"
        )
    return pairs


def _check_dataset_name(name: str) -> None:
    if not _NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"dataset name must be a folder name such as 'ml-1m_clean' (letters, digits, . _ -), "
            f"got {name!r}"
        )


# temporal split

SplitMode = Literal["global", "per_user", "leave_last_out"]


def temporal_split(
    interactions: pd.DataFrame,
    mode: SplitMode = "global",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    user_col: str = "user",
    time_col: str = "timestamp",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train, validation and test rows of ``interactions``, earlier rows before later ones.

    ``mode``:

    - ``"global"``: all rows in time order, cut at the ``ratios`` (one time line for everyone);
    - ``"per_user"``: each user's rows in time order, cut at the ``ratios``;
    - ``"leave_last_out"``: each user's last row is test, the one before validation and the
      rest training (``ratios`` unused); users with fewer than 3 rows stay in training.

    A cut falls at ``round(n * cumulative ratio)``, rounding halves up; rows with equal times
    keep their table order. Each part keeps the rows in their original order and index.
    """
    if mode not in ("global", "per_user", "leave_last_out"):
        raise ValueError(f"mode must be 'global', 'per_user' or 'leave_last_out', got {mode!r}")
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(
            f"ratios must be three non-negative fractions (train, valid, test) summing to 1, "
            f"got {ratios}"
        )
    needed = [time_col] if mode == "global" else [user_col, time_col]
    missing = [column for column in needed if column not in interactions.columns]
    if missing:
        raise ValueError(
            f"interactions lack the columns {missing}; pass user_col/time_col naming "
            f"columns among {list(interactions.columns)}"
        )

    # position of each row in its time line, and the length of that line
    positions = np.arange(len(interactions))
    if mode == "global":
        order = np.argsort(interactions[time_col].to_numpy(), kind="stable")
        rank = np.empty(len(interactions), dtype=np.int64)
        rank[order] = positions
        length = np.full(len(interactions), len(interactions))
    else:
        keyed = pd.DataFrame(
            {"user": interactions[user_col].to_numpy(), "time": interactions[time_col].to_numpy()}
        )
        ordered = keyed.sort_values(["user", "time"], kind="stable")
        rank = np.empty(len(interactions), dtype=np.int64)
        rank[ordered.index.to_numpy()] = ordered.groupby("user").cumcount().to_numpy()
        length = keyed.groupby("user")["time"].transform("size").to_numpy()

    # which part each row falls in
    if mode == "leave_last_out":
        eligible = length >= 3
        test = eligible & (rank == length - 1)
        valid = eligible & (rank == length - 2)
        short = interactions[user_col][~eligible].nunique()
        if short:
            log.info("leave-last-out: %d users with fewer than 3 interactions stay in train", short)
    else:
        train_end = np.floor(length * ratios[0] + 0.5)
        valid_end = np.floor(length * (ratios[0] + ratios[1]) + 0.5)
        valid = (rank >= train_end) & (rank < valid_end)
        test = rank >= valid_end
    train = ~(valid | test)
    return interactions[train], interactions[valid], interactions[test]
