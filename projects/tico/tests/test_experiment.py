import json

import pytest

from shared.config import ConfigError
from tico.experiment import _batch_verdict, reproduce, with_overrides

EXPERIMENT = [
    "experiment.seeds=[0]",
    "experiment.batch_sizes=[16,32]",
    "experiment.batch_sweep_images=64",
    "experiment.rhos=[1.0,8.0]",
    "experiment.betas=[0.9]",
    "experiment.run=[comparison,batch_size,rho,beta]",
]


def test_reproduce_writes_tables_plots_and_a_pass_flag_and_reuses_finished_runs(tiny, runs_root):
    config = tiny(*EXPERIMENT)
    results = reproduce(config)
    folder = runs_root / "tico" / "reproduce-smoke"
    saved = json.loads((folder / "results.json").read_text())
    assert isinstance(saved["passed"], bool)
    assert saved["passed"] == results["passed"]
    assert saved["checks"][0]["check"].startswith("TiCo kNN beats the random-init encoder")
    assert set(saved["batch_size"]["table"]["tico"]) == {"16", "32"}
    assert saved["batch_size"]["table"]["tico"]["16"]["steps"] == 4
    assert set(saved["rho"]["table"]) == {"1", "8"}
    for plot in ("spectrum.png", "batch_size.png", "rho.png", "beta.png"):
        assert (folder / plot).stat().st_size > 1000
    markdown = (folder / "results.md").read_text()
    assert "## 1. TiCo vs Barlow Twins" in markdown
    assert "**Smoke scale**" in markdown
    assert "![accuracy against batch size](batch_size.png)" in markdown

    # the rho=8 point is the comparison's TiCo run, trained once
    runs = sorted(path.name for path in (folder / "runs").iterdir() if path.is_dir())
    assert runs.count("tico-seed0-bs32-rho8-beta0.9") == 1
    assert len(runs) == 7

    # a second reproduction reads the finished runs
    again = reproduce(config)
    assert json.loads(json.dumps(again["comparison"]["summary"])) == json.loads(
        json.dumps(results["comparison"]["summary"])
    )

    # another config in the same folder is refused with the fix
    with pytest.raises(ConfigError, match="other training settings"):
        reproduce(tiny(*EXPERIMENT, "loss.rho=3.0"))


def test_small_batch_verdict_compares_the_drop_of_both_methods():
    table = {
        "tico": {32: {"knn_acc": 0.50}, 512: {"knn_acc": 0.52}},
        "barlow_twins": {32: {"knn_acc": 0.40}, 512: {"knn_acc": 0.55}},
    }
    assert "TiCo degrades less" in _batch_verdict({"table": table})
    table["tico"][32]["knn_acc"] = 0.30
    assert "does not degrade less" in _batch_verdict({"table": table})


def test_experiment_overrides_are_validated(tiny):
    assert with_overrides(tiny(), ["loss.rho=20"]).loss.rho == 20.0
    with pytest.raises(ConfigError, match="invalid experiment override"):
        with_overrides(tiny(), ["loss.nope=1"])
