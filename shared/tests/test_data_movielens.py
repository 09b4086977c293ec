import dataclasses
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from shared.data import movielens
from shared.data.locations import CorruptDataError
from shared.data.movielens import load_diffrec, load_ml1m, load_ml100k, temporal_split


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PAPERSTACK_DATA", str(root))
    return root


def write_diffrec(root, name, train, valid, test, item_emb=None):
    folder = root / "diffrec" / name
    folder.mkdir(parents=True)
    for split, pairs in (("train", train), ("valid", valid), ("test", test)):
        np.save(folder / f"{split}_list.npy", np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    if item_emb is not None:
        np.save(folder / "item_emb.npy", item_emb)
    return folder


def test_ml100k_has_943_users_1682_items_and_contiguous_ids():
    data = load_ml100k(source="embedded")

    assert (len(data), data.n_users, data.n_items) == (100_000, 943, 1682)
    assert list(data.frame.columns) == ["user", "item", "rating", "timestamp"]
    assert data.frame.dtypes.to_dict() == {
        "user": np.int64,
        "item": np.int64,
        "rating": np.float32,
        "timestamp": np.int64,
    }
    assert set(data.frame["user"]) == set(range(943))
    assert set(data.frame["item"]) == set(range(1682))
    # first line of ml-100k.inter: 196 242 3 881250949; raw ids sort numerically
    user, item, rating, timestamp = (data.frame[c].iloc[0] for c in data.frame.columns)
    assert (data.raw_user_ids[user], data.raw_item_ids[item]) == (196, 242)
    assert (rating, timestamp) == (3.0, 881250949)
    assert data.raw_user_ids[:3].tolist() == [1, 2, 3]


def test_ml100k_features_are_aligned_with_the_new_ids():
    data = load_ml100k(source="embedded")

    assert len(data.users) == 943
    assert len(data.items) == 1682
    user_196 = data.users.loc[data.raw_user_ids.get_loc(196)]
    assert (user_196["user_id"], user_196["gender"], user_196["occupation"]) == (196, "M", "writer")
    toy_story = data.items.loc[0]
    assert (toy_story["item_id"], toy_story["movie_title"]) == (1, "Toy Story")
    assert toy_story["class"] == "Animation Children's Comedy"


def test_ml1m_dat_files_are_read_with_their_latin1_titles(data_dir):
    folder = data_dir / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text(
        "1::1193::5::978300760\n1::661::3::978302109\n10::1193::4::978301968\n2::3408::4::978300275\n"
    )
    (folder / "users.dat").write_text(
        "1::F::1::10::48067\n2::M::56::16::70072\n10::F::35::1::95370\n"
    )
    (folder / "movies.dat").write_bytes(
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "3408::Erin Brockovich (2000)::Drama\n"
        "3409::Les Misérables (1998)::Drama\n".encode("latin-1")
    )

    data = load_ml1m(download=False)

    assert (len(data), data.n_users, data.n_items, data.origin) == (4, 3, 3, "data-dir")
    assert data.raw_user_ids.tolist() == [1, 2, 10]
    assert data.raw_item_ids.tolist() == [661, 1193, 3408]
    assert data.frame.to_numpy().tolist() == [
        [0, 1, 5, 978300760],
        [0, 0, 3, 978302109],
        [2, 1, 4, 978301968],
        [1, 2, 4, 978300275],
    ]
    assert data.users["gender"].tolist() == ["F", "M", "F"]
    assert data.items["genres"].tolist()[0] == "Animation|Children's|Musical"
    # a movie nobody rated is left out of the item table
    assert "Les Misérables (1998)" not in data.items["title"].tolist()


def test_ml1m_zip_is_downloaded_and_unpacked_into_the_data_directory(
    data_dir, tmp_path, monkeypatch
):
    archive = tmp_path / "server" / "ml-1m.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("ml-1m/ratings.dat", "1::1193::5::978300760\n2::661::3::978302109\n")
        zipped.writestr("ml-1m/README", "MovieLens 1M")
    download = dataclasses.replace(movielens.ML1M_DOWNLOAD, url=archive.as_uri(), md5=None)
    spec = dataclasses.replace(movielens.ML1M_SPEC, downloads=[download])
    monkeypatch.setattr(movielens, "ML1M_SPEC", spec)

    data = load_ml1m()

    assert (data.origin, len(data), data.users, data.items) == ("downloaded", 2, None, None)
    assert (data_dir / "ml-1m" / "ratings.dat").is_file()


def test_ml1m_line_with_missing_fields_names_the_line(data_dir):
    (data_dir / "ml-1m").mkdir()
    (data_dir / "ml-1m" / "ratings.dat").write_text("1::1193::5::978300760\n1::661\n")

    with pytest.raises(CorruptDataError, match="line 2"):
        load_ml1m(download=False)


def test_diffrec_ml1m_clean_matches_the_published_counts():
    splits = load_diffrec("ml-1m_clean", source="embedded")

    assert (splits.n_users, splits.n_items) == (5949, 2810)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (403_277, 110_722, 57_532)
    assert splits.train.dtype == torch.int64
    assert splits.train.shape[1] == 2
    assert splits.item_emb.shape == (2810, 64)
    assert splits.item_emb.dtype == torch.float32
    assert splits.train[:3].tolist() == [[0, 0], [0, 1], [0, 2]]
    assert splits.frame("test").iloc[0].tolist() == [0, 302]


def test_diffrec_reads_any_dataset_name_in_its_format(data_dir):
    write_diffrec(data_dir, "yelp_clean", [[0, 0], [1, 3]], [[2, 1]], [[1, 2]])

    splits = load_diffrec("yelp_clean")

    assert (splits.n_users, splits.n_items, splits.item_emb) == (3, 4, None)
    assert splits.valid.tolist() == [[2, 1]]


def test_diffrec_negative_ids_are_refused_naming_the_file_and_row(data_dir):
    write_diffrec(data_dir, "bad", [[0, 0], [1, -4]], [[0, 1]], [[0, 2]])

    with pytest.raises(CorruptDataError, match=r"train_list\.npy.*row 1"):
        load_diffrec("bad")


def test_diffrec_ids_beyond_the_declared_range_are_refused(data_dir):
    write_diffrec(data_dir, "wide", [[0, 0]], [[0, 1]], [[0, 9]])

    with pytest.raises(CorruptDataError, match=r"test_list\.npy.*item id 9.*n_items=5"):
        load_diffrec("wide", n_items=5)
    assert load_diffrec("wide", n_items=12).n_items == 12


def test_diffrec_item_embeddings_must_have_one_row_per_item(data_dir):
    emb = np.zeros((3, 8), dtype=np.float32)
    write_diffrec(data_dir, "mismatch", [[0, 0], [1, 3]], [[0, 1]], [[0, 2]], item_emb=emb)

    with pytest.raises(CorruptDataError, match=r"item_emb\.npy has shape \(3, 8\).*4 items"):
        load_diffrec("mismatch")


def test_diffrec_pairs_must_be_two_integer_columns(data_dir):
    folder = write_diffrec(data_dir, "flat", [[0, 0]], [[0, 1]], [[0, 2]])
    np.save(folder / "valid_list.npy", np.zeros((4, 3)))

    with pytest.raises(CorruptDataError, match=r"valid_list\.npy holds float64 \(4, 3\)"):
        load_diffrec("flat")


def test_diffrec_names_must_be_folder_names():
    with pytest.raises(ValueError, match="folder name"):
        load_diffrec("../ml-1m_clean")


@pytest.fixture
def history():
    # user 0 acts at times 1..5, user 1 at 10..12, user 2 once; shuffled rows
    rows = [(0, t) for t in (3, 1, 5, 2, 4)] + [(1, t) for t in (12, 10, 11)] + [(2, 7)]
    return pd.DataFrame(rows, columns=["user", "timestamp"]).assign(item=range(9))


def test_global_split_cuts_one_time_line_at_the_ratios(history):
    train, valid, test = temporal_split(history, "global", ratios=(0.6, 0.2, 0.2))

    # 9 rows: cuts at round(5.4) = 5 and round(7.2) = 7
    assert sorted(train["timestamp"]) == [1, 2, 3, 4, 5]
    assert sorted(valid["timestamp"]) == [7, 10]
    assert sorted(test["timestamp"]) == [11, 12]
    assert train.index.tolist() == sorted(train.index)  # original order kept


def test_per_user_split_cuts_each_history(history):
    train, valid, test = temporal_split(history, "per_user", ratios=(0.6, 0.2, 0.2))

    # user 0: 5 rows -> 3 / 1 / 1; user 1: 3 rows -> round(1.8)=2 / 0 / 1; user 2: 1 / 0 / 0
    assert sorted(map(tuple, train[["user", "timestamp"]].to_numpy())) == [
        (0, 1), (0, 2), (0, 3), (1, 10), (1, 11), (2, 7)
    ]  # fmt: skip
    assert valid[["user", "timestamp"]].to_numpy().tolist() == [[0, 4]]
    assert sorted(test[["user", "timestamp"]].to_numpy().tolist()) == [[0, 5], [1, 12]]


def test_leave_last_out_holds_out_each_users_last_two(history):
    train, valid, test = temporal_split(history, "leave_last_out")

    assert sorted(test[["user", "timestamp"]].to_numpy().tolist()) == [[0, 5], [1, 12]]
    assert sorted(valid[["user", "timestamp"]].to_numpy().tolist()) == [[0, 4], [1, 11]]
    assert len(train) == 5
    assert 2 in set(train["user"])


def test_split_ratios_must_sum_to_one(history):
    with pytest.raises(ValueError, match="summing to 1"):
        temporal_split(history, ratios=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="lack the columns"):
        temporal_split(history, time_col="time")
