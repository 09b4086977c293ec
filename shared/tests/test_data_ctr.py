import numpy as np
import pytest

from shared.data.ctr import load_ctr_samples


def test_ali_ccp_keeps_its_train_val_test_files_and_three_scenarios():
    table = load_ctr_samples("ali-ccp", source="embedded")

    assert table.frame.shape == (200, 33)
    assert {name: len(part) for name, part in table.splits.items()} == {
        "train": 100,
        "val": 50,
        "test": 50,
    }
    assert (table.label, table.scenario, table.user, table.item) == ("click", "301", "101", "205")
    assert table.other_labels == ["purchase"]
    assert len(table.dense) == 8
    assert all(column.startswith("D") for column in table.dense)
    assert len(table.sparse) == 22
    assert "301" not in table.sparse
    assert "101" in table.sparse
    assert np.bincount(table.scenario_ids()).tolist() == [146, 32, 22]
    assert np.bincount(table.scenario_ids(table.splits["train"])).tolist() == [69, 19, 12]
    assert table.frame[table.label].sum() == 16


@pytest.mark.parametrize(
    ("name", "rows", "label", "scenario", "per_scenario"),
    [
        ("douban", 3000, "rating", "domain", [364, 337, 2299]),
        ("mind", 8000, "label", "Category", [3742, 1565, 1428, 1265]),
        ("kuairand", 200, "is_click", "tab", [0, 200, 0, 0, 0]),
    ],
)
def test_single_file_sources_have_label_scenario_and_no_splits(
    name, rows, label, scenario, per_scenario
):
    table = load_ctr_samples(name, source="embedded")

    assert len(table.frame) == rows
    assert (table.label, table.scenario, table.splits) == (label, scenario, None)
    ids = table.scenario_ids()
    assert np.bincount(ids, minlength=table.n_scenarios).tolist() == per_scenario
    assert table.label not in table.sparse
    assert table.scenario not in table.sparse
    assert table.user in table.sparse
    assert table.item in table.sparse


def test_kuairand_leaves_post_click_times_out_of_the_features():
    table = load_ctr_samples("kuairand", source="embedded")

    assert "play_time_ms" in table.unused
    assert "play_time_ms" not in table.sparse
    assert table.dense == ["follow_user_num", "fans_user_num", "friend_user_num", "register_days"]
    assert len(table.sparse) == 32


def test_douban_features_follow_the_benchmark():
    table = load_ctr_samples("douban", source="embedded")

    assert table.sparse == ["user_id", "item_id", "living_place", "time_bin"]
    assert (table.dense, table.unused) == ([], ["join_time"])
    assert set(table.frame["rating"]) == {0, 1}


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="one of"):
        load_ctr_samples("criteo")
