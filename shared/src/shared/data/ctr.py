"""Multi-scenario click-through-rate tables: the samples of the Scenario-Wise-Rec benchmark
(Li et al., 2024) for Ali-CCP, Douban, MIND and KuaiRand.

Each table says which column is the label, which names the scenario (domain), which are sparse
(categorical ids) and which dense (numbers) features, following the benchmark's own scripts
(``scripts/run_*_multi_domain.py`` in Xiaopengli1/Scenario-Wise-Rec):

- ``ali-ccp``: label ``click`` (``purchase`` is a second label), scenario field ``301``
  (values 1, 2, 3), user field ``101``, item field ``205``, the ``D*`` fields dense, every other
  field sparse; the only source with train, val and test files.
- ``douban``: label ``rating`` (already 0/1), scenario ``domain`` (book, music, movie), sparse
  ``user_id``, ``item_id``, ``living_place``, ``time_bin``; ``join_time`` unused (``time_bin``
  encodes it).
- ``mind``: label ``label``, scenario ``Category`` (news, lifestyle, sports, finance), sparse
  ``User_ID``, ``News_ID``, ``SubCategory``.
- ``kuairand``: label ``is_click``, scenario ``tab`` (0, 1, 2, 4, 6; rows of other tabs are
  dropped, as in the benchmark), four dense counts, the rest sparse; play and stay times are
  unused because they are measured after the click. The sample holds one tab only.

The scenario column is kept out of ``sparse``: add it when a model takes it as an ordinary
feature. The user and item columns are in ``sparse``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from shared.data.locations import CorruptDataError, DatasetSpec, Source, locate

log = logging.getLogger(__name__)

CTRSource = Literal["ali-ccp", "douban", "mind", "kuairand"]
_ROOT = "ctr_samples/scenario_wise_rec"


@dataclass
class CTRTable:
    """A click-through-rate table and the role of each of its columns."""

    name: str
    frame: pd.DataFrame  # every row; for split sources the train rows, then val, then test
    label: str
    scenario: str | None  # column naming the scenario (domain) of a row, None if there is none
    scenario_values: list = field(default_factory=list)  # scenario values, in scenario-id order
    user: str | None = None
    item: str | None = None
    sparse: list[str] = field(default_factory=list)  # categorical features, user and item included
    dense: list[str] = field(default_factory=list)  # numeric features
    other_labels: list[str] = field(default_factory=list)  # further targets, e.g. purchase
    unused: list[str] = field(default_factory=list)  # kept in frame, not features (see module doc)
    splits: dict[str, pd.DataFrame] | None = (
        None  # "train", "val", "test" where the source has them
    )
    origin: str = ""

    @property
    def n_scenarios(self) -> int:
        return len(self.scenario_values)

    def scenario_ids(self, frame: pd.DataFrame | None = None) -> np.ndarray:
        """(rows,) int64 scenario index of each row of ``frame`` (default: the whole table)."""
        if self.scenario is None:
            raise ValueError(f"{self.name} has no scenario column")
        frame = self.frame if frame is None else frame
        codes = pd.Categorical(frame[self.scenario], categories=self.scenario_values).codes
        if (codes < 0).any():
            unknown = sorted(set(frame[self.scenario][codes < 0].tolist()))
            raise ValueError(
                f"{self.name}: scenario values {unknown} are not among {self.scenario_values}"
            )
        return codes.astype(np.int64)


@dataclass(frozen=True)
class _Layout:
    files: tuple[str, ...]  # relative to the source folder; several means train, val, test
    label: str
    scenario: str
    scenario_values: tuple
    user: str
    item: str
    dense: tuple[str, ...] = ()
    other_labels: tuple[str, ...] = ()
    unused: tuple[str, ...] = ()
    drop_other_scenarios: bool = False


_LAYOUTS: dict[str, _Layout] = {
    "ali-ccp": _Layout(
        files=tuple(f"ali_ccp_{split}_sample.csv" for split in ("train", "val", "test")),
        label="click",
        scenario="301",
        scenario_values=(1, 2, 3),
        user="101",
        item="205",
        dense=("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853"),
        other_labels=("purchase",),
    ),
    "douban": _Layout(
        files=("douban_sample.csv",),
        label="rating",
        scenario="domain",
        scenario_values=("book", "music", "movie"),
        user="user_id",
        item="item_id",
        unused=("join_time",),
    ),
    "mind": _Layout(
        files=("mind_sample.csv",),
        label="label",
        scenario="Category",
        scenario_values=("news", "lifestyle", "sports", "finance"),
        user="User_ID",
        item="News_ID",
    ),
    "kuairand": _Layout(
        files=("kuairand_sample.csv",),
        label="is_click",
        scenario="tab",
        scenario_values=(0, 1, 2, 4, 6),
        user="user_id",
        item="video_id",
        dense=("follow_user_num", "fans_user_num", "friend_user_num", "register_days"),
        unused=("play_time_ms", "duration_ms", "profile_stay_time", "comment_stay_time"),
        drop_other_scenarios=True,
    ),
}


def ctr_samples_spec(name: CTRSource) -> DatasetSpec:
    """Where the Scenario-Wise-Rec sample of ``name`` may be found."""
    # Limitation: only the benchmark's samples are read; the full tables (Ali-CCP is 85 million
    # rows) have no official download in this layout. Full files with the same names and
    # columns in the data directory are read the same way.
    if name not in _LAYOUTS:
        raise ValueError(f"CTR source must be one of {sorted(_LAYOUTS)}, got {name!r}")
    files = [f"{_ROOT}/{name}/{file}" for file in _LAYOUTS[name].files]
    return DatasetSpec(
        name=f"{name} CTR sample",
        layouts=[files],
        embedded=files,
        note="The samples are in scripts/data/ of https://github.com/Xiaopengli1/Scenario-Wise-Rec.",
    )


def load_ctr_samples(name: CTRSource, source: Source = "auto") -> CTRTable:
    """The Scenario-Wise-Rec sample table ``name`` with its label, scenario and feature columns."""
    layout_spec = ctr_samples_spec(name)
    layout = _LAYOUTS[name]
    located = locate(layout_spec, source=source, download=False)

    # the rows, with the file (train, val, test) each came from
    parts = [pd.read_csv(path) for path in located.files]
    frame = pd.concat(parts, ignore_index=True)
    part_of = np.repeat(np.arange(len(parts)), [len(part) for part in parts])
    columns = set(frame.columns)
    expected = {layout.label, layout.scenario, layout.user, layout.item, *layout.dense}
    missing = sorted(expected - columns)
    if missing:
        raise CorruptDataError(
            f"{located.files[0]} lacks the columns {missing}; is it the {name} sample of "
            "Scenario-Wise-Rec?"
        )

    # scenarios the benchmark keeps
    if layout.drop_other_scenarios:
        keep = frame[layout.scenario].isin(layout.scenario_values)
        if not keep.all():
            log.info("%s: dropped %d rows of other scenarios", name, int((~keep).sum()))
            frame = frame[keep].reset_index(drop=True)
            part_of = part_of[keep.to_numpy()]

    # column roles
    not_sparse = {layout.label, layout.scenario, *layout.dense, *layout.other_labels}
    not_sparse |= set(layout.unused)
    sparse = [column for column in frame.columns if column not in not_sparse]
    splits = None
    if len(parts) == 3:
        bounds = np.searchsorted(part_of, [0, 1, 2, 3])
        splits = {
            split: frame.iloc[bounds[k] : bounds[k + 1]]
            for k, split in enumerate(("train", "val", "test"))
        }

    table = CTRTable(
        name=name,
        frame=frame,
        label=layout.label,
        scenario=layout.scenario,
        scenario_values=list(layout.scenario_values),
        user=layout.user,
        item=layout.item,
        sparse=sparse,
        dense=list(layout.dense),
        other_labels=list(layout.other_labels),
        unused=list(layout.unused),
        splits=splits,
        origin=located.origin,
    )
    table.scenario_ids()  # every row must belong to a known scenario
    log.info(
        "%s: %d rows, %d sparse and %d dense features, %d scenarios (%s)",
        name,
        len(frame),
        len(sparse),
        len(table.dense),
        table.n_scenarios,
        located.origin,
    )
    return table
