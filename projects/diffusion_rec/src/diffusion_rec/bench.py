"""Benchmark: our DiffRec against the authors' released code and RecBole's DiffRec in one run.

Same split (ML-1M clean), same hyper-parameters (the authors' ML-1M settings), same
machine, one after the other, each in its own process measured the same way (wall clock
from the interpreter's start to the test metrics, CPU time, peak resident memory of the
process tree). Also measured: time per training epoch, time to each one's best validation
Recall@20 and to the first validation reaching the lowest of their bests (a common target:
the time to one's own best rewards an early, lower peak), and the test metrics under the
released code's Recall definition (hits / |R|), which is the only one it prints. RecBole's
Recall has the same |R| denominator (``np.cumsum(hits) / pos_len``), and its NDCG is the
usual one (ideal DCG over min(K, |R|) items), so the three rows compare like with like.

The released code is never copied into this repository: ``bench.released_code`` points at a
checkout of YiyanXu/DiffRec kept elsewhere (e.g. a temporary folder). It needs two
compatibility shims to run on today's libraries, installed only for its process through a
``sitecustomize`` module: SciPy removed ``spmatrix.A`` (the code densifies with ``.A``),
and it imports ``bottleneck`` without using it.

RecBole (``recbole`` on PyPI, ``recbole.model.general_recommender.diffrec.DiffRec``) runs in
its own process too, so its time and peak memory are measured the same way. How it is
installed, and why not in the workspace's ``bench`` dependency group: ``recbole`` 1.2.1
requires ``ray<=2.6.3`` (a ~60 MB wheel with no build for Python >= 3.12, so the lock would
carry a group that cannot install there) and pins ``colorama==0.4.4``, which a group would
force on every project of the one universal lock. A separate virtual environment would
need its own torch: ours is a 2.x CUDA build of several GB. Instead ``run_recbole``
installs RecBole and the few small packages it imports that we lack (``RECBOLE_PACKAGES``,
pinned, ``--no-deps``) with ``uv pip install --target`` into a cache folder outside the
repository (``bench.recbole_site``, default ``~/.cache/paperstack/recbole-<version>``) on
first use, and runs it on this interpreter with that folder on ``PYTHONPATH``: RecBole then
uses exactly our torch, numpy, scipy and pandas. ray is never imported: a small driver
(written to a temporary folder at run time) repeats ``recbole.quick_start.run_recbole``'s
steps without importing ``recbole.quick_start`` (whose only extra is ray), times every
training epoch and validation, and prints one JSON line. ``bench.recbole_python`` instead
names an interpreter whose own environment has recbole. Two shims, in a ``sitecustomize``
for RecBole's process only: numpy 2 removed ``np.float_``/``np.complex_``/``np.unicode_``
that RecBole's ``Config`` aliases, and torch >= 2.6 loads checkpoints weights-only while
RecBole's own checkpoint pickles its ``Config``. RecBole reads DiffRec's exact split:
three atomic files ``<dataset>.{train,valid,test}.inter`` with ``benchmark_filename`` (no
re-split, no filtering), and the driver checks that the pairs RecBole built, mapped back
to our ids, are the files' pairs.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from diffusion_rec.config import Config
from diffusion_rec.training import fit_and_evaluate
from shared.data.locations import data_root
from shared.runs import markdown_table, runs_root, write_atomic

log = logging.getLogger(__name__)

# run only inside the released code's process (PYTHONPATH), never imported by this package
_SITECUSTOMIZE = """
import sys, types
import scipy.sparse as sp
for cls in (sp.csr_matrix, sp.coo_matrix, sp.csc_matrix):
    if not hasattr(cls, "A"):
        cls.A = property(lambda self: self.toarray())
sys.modules.setdefault("bottleneck", types.ModuleType("bottleneck"))
"""

_EPOCH = re.compile(r"Runing Epoch (\d+) train loss ([\d.naninf-]+) costs (\d+): (\d+): (\d+)")
_RESULT = re.compile(r"\[(Valid|Test)\]: Precision: \S+ Recall: (\S+) NDCG: (\S+) MRR")


def released_command(config: Config, folder: Path, data_dir: Path) -> list[str]:
    """The authors' documented ML-1M clean run of DiffRec/main.py, on the CPU."""
    d = config.diffusion
    dims = "[" + ",".join(str(x) for x in config.denoiser.dims) + "]"
    return [
        sys.executable,
        "-u",
        "main.py",
        "--dataset=ml-1m_clean",
        f"--data_path={data_dir}/",
        f"--lr={config.train.lr}",
        f"--weight_decay={config.train.weight_decay}",
        f"--batch_size={config.train.batch_size}",
        f"--dims={dims}",
        f"--emb_size={config.denoiser.emb_size}",
        f"--mean_type={d.mean_type}",
        f"--steps={d.steps}",
        f"--noise_scale={d.noise_scale}",
        f"--noise_min={d.noise_min}",
        f"--noise_max={d.noise_max}",
        f"--sampling_steps={d.noise_steps}",
        "--reweight=1",
        f"--epochs={config.bench.epochs}",
        "--topN=[10, 20]",
        f"--save_path={folder}/saved/",
    ]


def parse_released_log(text: str) -> dict[str, Any]:
    """Per-epoch times and the valid/test metrics (at the best validation) from its stdout."""
    epochs = [int(h) * 3600 + int(m) * 60 + int(s) for *_, h, m, s in _EPOCH.findall(text)]
    results = _RESULT.findall(text)
    best = re.search(r"End\. Best Epoch (\d+)", text)
    parsed: dict[str, Any] = {"epochs": len(epochs), "epoch_seconds": epochs}
    if best:
        parsed["best_epoch"] = int(best.group(1))
    parsed["validations"] = released_validations(text)
    # the last Valid/Test pair printed is the best one (after "End. Best Epoch")
    final = results[-2:] if len(results) >= 2 else []
    for split, recall, ndcg in final:
        recalls, ndcgs = [float(x) for x in recall.split("-")], [float(x) for x in ndcg.split("-")]
        parsed[split.lower()] = {
            "recall_rel@10": recalls[0],
            "recall_rel@20": recalls[1],
            "ndcg@10": ndcgs[0],
            "ndcg@20": ndcgs[1],
        }
    return parsed


def released_validations(text: str) -> list[dict[str, float]]:
    """Each validation of the released code's log: epoch, recall_rel@20, seconds since start.

    Its loop trains an epoch, ranks valid and test every 5th epoch and prints them, then
    prints the epoch's cost (training plus that ranking), so a [Valid] line belongs to the
    epoch line after it and is done by the end of that epoch (1 s resolution). The repeat
    of the best results after "End." is not a validation.
    """
    validations, pending, elapsed = [], None, 0
    for line in text.splitlines():
        if line.startswith("End. Best Epoch"):
            break
        epoch = _EPOCH.search(line)
        result = _RESULT.search(line)
        if result and result.group(1) == "Valid":
            pending = float(result.group(2).split("-")[1])
        elif epoch:
            *_, h, m, sec = epoch.groups()
            elapsed += int(h) * 3600 + int(m) * 60 + int(sec)
            if pending is not None:
                validations.append(
                    {"epoch": int(epoch.group(1)), "recall_rel@20": pending, "since_fit": elapsed}
                )
                pending = None
    return validations


def time_to_target(curves: dict[str, list[dict]]) -> tuple[float, dict[str, float | None]]:
    """Seconds each implementation took to first reach a validation Recall@20 all of them reach.

    The target is the lowest of the implementations' best validation recall_rel@20, so every
    one reaches it; unlike the time to each one's own best, this does not reward stopping at
    an early, lower peak. ``curves`` maps a name to its validations (``recall_rel@20``,
    ``since_fit``); names without validations are left out.
    """
    curves = {name: curve for name, curve in curves.items() if curve}
    if not curves:
        return float("nan"), {}
    target = min(max(v["recall_rel@20"] for v in curve) for curve in curves.values())
    reached = {
        name: next(v["since_fit"] for v in curve if v["recall_rel@20"] >= target)
        for name, curve in curves.items()
    }
    return target, reached


def run_released(config: Config) -> dict[str, Any] | None:
    folder = Path(config.bench.released_code).expanduser()
    script_dir = folder / "DiffRec"
    if not (script_dir / "main.py").exists():
        log.warning(
            "bench.released_code=%r has no DiffRec/main.py: skipping the released code",
            config.bench.released_code,
        )
        return None
    data_dir = data_root() / "diffrec" / "ml-1m_clean"
    if not (data_dir / "train_list.npy").exists():
        raise FileNotFoundError(
            f"the released code reads the split from files; put ML-1M clean in {data_dir} "
            "(set PAPERSTACK_DATA to the offline mirror)"
        )
    with tempfile.TemporaryDirectory(prefix="diffrec-released-") as scratch:
        Path(scratch, "sitecustomize.py").write_text(_SITECUSTOMIZE)
        env = {**os.environ, "PYTHONPATH": scratch}
        command = released_command(config, Path(scratch), data_dir)
        log.info("running the released code: %s", " ".join(command))
        output, measured = _run_peer(command, script_dir, env, config.bench.timeout_s)
    parsed = parse_released_log(output)
    parsed.update(measured)
    if "test" not in parsed:
        parsed["log_tail"] = output[-2000:]
    return parsed


def _run_peer(command: list[str], cwd: Path, env: dict, timeout_s: int) -> tuple[str, dict]:
    """Run a peer's process; its output and its wall-clock, CPU time and peak memory."""
    started = time.perf_counter()
    cpu_before = _cpu_seconds(resource.RUSAGE_CHILDREN)
    output, timed_out, peak_mb = _run_watching_memory(command, cwd, env, timeout_s)
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    return output, {
        "seconds_total": round(seconds, 1),
        "timed_out": timed_out,
        "cpu_seconds": round(cpu_seconds, 1),
        "peak_rss_mb": round(peak_mb, 1),
    }


def _run_watching_memory(
    command: list[str], cwd: Path, env: dict, timeout_s: int
) -> tuple[str, bool, float]:
    """Run ``command``; return its output, whether it timed out, and its peak RSS in MiB.

    The peak is polled every half second and summed over the process and its children (the
    released code's DataLoader workers), an upper bound since forked workers share pages;
    ``ru_maxrss`` of children would instead include this process's memory, inherited at fork.
    """
    import psutil

    with tempfile.TemporaryFile("w+") as sink:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True
        )
        watched, peak, deadline = psutil.Process(process.pid), 0, time.monotonic() + timeout_s
        timed_out = False
        while process.poll() is None:
            try:
                tree = [watched, *watched.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            if time.monotonic() > deadline:
                process.kill()
                timed_out = True
                break
            time.sleep(0.5)
        process.wait()
        sink.seek(0)
        return sink.read(), timed_out, peak / 2**20


def _cpu_seconds(who: int) -> float:
    """User + system CPU time of this process or of its finished children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


_OURS_RESULT = re.compile(r"^OURS_RESULT (\{.*\})\s*$", re.MULTILINE)


def _run_ours(config: Config, seed: int) -> dict[str, Any]:
    """Our DiffRec with the benchmark's settings and ``seed``, in its own process.

    Measured exactly as the peers are (``_run_peer``): the wall clock, CPU time and peak
    memory of the whole process, from the interpreter's start through loading the data,
    training and ranking the test split.
    """
    from shared.config import save_config

    ours_config = copy.deepcopy(config)
    ours_config.model = "diffrec"
    ours_config.train.seed = seed
    ours_config.train.max_epochs = config.bench.epochs
    ours_config.data.dataset = "ml-1m_clean"
    ours_config.parity.recall_denominator = "relevant"  # select as the released code does
    with tempfile.TemporaryDirectory(prefix="diffrec-ours-") as scratch:
        save_config(ours_config, Path(scratch, "config.yaml"))
        command = [sys.executable, "-u", "-m", "diffusion_rec.bench", "config.yaml"]
        log.info("running ours (seed %d): %s", seed, " ".join(command))
        output, measured = _run_peer(
            command, Path(scratch), dict(os.environ), config.bench.timeout_s
        )
    found = _OURS_RESULT.findall(output)
    if not found:
        raise RuntimeError(
            f"our DiffRec printed no result; its output ends with:\n{output[-2000:]}"
        )
    ours = json.loads(found[-1])
    ours.update(measured)
    return ours


def _ours_in_this_process(config_path: str) -> None:
    """The benchmark's child process: train and rank, print the result as one JSON line."""
    from shared.config import load_config

    result = fit_and_evaluate(load_config(Config, config_path, []))
    print("OURS_RESULT " + json.dumps(result, default=str), flush=True)


def bench(config: Config) -> dict[str, Any]:
    """Run ours and the peers on ML-1M clean; write runs/diffusion_rec/bench/bench.{md,json}.

    The first of ``bench.seeds`` is the head-to-head run of all three; further seeds run ours
    and RecBole again for the spread of their metrics. The released code fixes its seed to 1
    in main.py (no option), so it runs once.
    """
    folder = runs_root() / "diffusion_rec" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    seeds = list(config.bench.seeds)
    ours_runs = [_run_ours(config, seed) for seed in seeds]
    ours = ours_runs[0]
    report: dict[str, Any] = {"seeds": seeds, "ours": ours, "released": None, "recbole": None}
    released_code = config.bench.released_code or os.environ.get("DIFFREC_RELEASED_CODE", "")
    if released_code:
        config = copy.deepcopy(config)
        config.bench.released_code = released_code
        report["released"] = run_released(config)
    else:
        log.warning(
            "no released code to compare with: fetch YiyanXu/DiffRec into a folder outside "
            "this repository and pass bench.released_code=<folder> (or DIFFREC_RELEASED_CODE)"
        )
    recbole_runs = []
    if config.bench.recbole:
        for seed in seeds:
            seeded = copy.deepcopy(config)
            seeded.train.seed = seed
            recbole_runs.append(run_recbole(seeded))
        report["recbole"] = recbole_runs[0]

    rows = [
        _row(
            f"ours (Lightning), seed {seeds[0]}",
            ours.get("seconds_per_epoch"),
            ours.get("seconds_to_best"),
            ours.get("seconds_total"),
            ours.get("peak_rss_mb"),
            ours["test"],
            ours["epochs"],
        )
    ]
    ratios: dict[str, float] = {}
    curves = {"ours": ours.get("validations", [])}
    peers: dict[str, tuple[str, dict[str, Any]]] = {}
    released = report["released"]
    if released and "test" in released:
        # its per-epoch "costs" include the validation + test ranking every 5th epoch
        seconds = released["epoch_seconds"]
        train_only = [s for i, s in enumerate(seconds, start=1) if i % 5]
        released["seconds_per_epoch"] = sum(train_only) / max(len(train_only), 1)
        released["seconds_to_best"] = sum(seconds[: released.get("best_epoch", len(seconds))])
        peers["released"] = ("released code (YiyanXu/DiffRec), seed 1", released)
    recbole = report["recbole"]
    if recbole and "test" in recbole:
        peers["recbole"] = (f"RecBole DiffRec, seed {seeds[0]}", recbole)
    for peer, (label, theirs) in peers.items():
        rows.append(
            _row(
                label,
                theirs["seconds_per_epoch"],
                theirs.get("seconds_to_best"),
                theirs["seconds_total"],
                theirs["peak_rss_mb"],
                theirs["test"],
                theirs["epochs"],
            )
        )
        curves[peer] = theirs.get("validations", [])
        ratios[f"time ours/{peer} (total)"] = ours["seconds_total"] / theirs["seconds_total"]
        ratios[f"cpu time ours/{peer}"] = ours["cpu_seconds"] / max(theirs["cpu_seconds"], 1e-9)
        if theirs.get("seconds_to_best"):
            ratios[f"time ours/{peer} (to best)"] = (
                ours["seconds_to_best"] / theirs["seconds_to_best"]
            )
        ratios[f"time ours/{peer} (per epoch)"] = ours["seconds_per_epoch"] / max(
            theirs["seconds_per_epoch"], 1e-9
        )
        ratios[f"recall_rel@20 ours - {peer}"] = (
            ours["test"]["recall_rel@20"] - theirs["test"]["recall_rel@20"]
        )

    # time to a validation level every implementation reaches (seed-1 runs)
    target, reached = time_to_target(curves)
    report["common_target"] = {"recall_rel@20": target, "seconds": reached}
    for peer in ("released", "recbole"):
        if reached.get("ours") and reached.get(peer):
            ratios[f"time ours/{peer} (to common valid target)"] = reached["ours"] / reached[peer]

    # the spread over seeds, ours and RecBole
    finished = [run for run in recbole_runs if "test" in run]
    seed_rows = []
    if len(seeds) > 1:
        seed_rows.append(_seed_row("ours (Lightning)", ours_runs))
        if len(finished) == len(seeds):
            seed_rows.append(_seed_row("RecBole DiffRec", finished))
            mean = _mean_std([r["test"]["recall_rel@20"] for r in ours_runs])[0]
            theirs = _mean_std([r["test"]["recall_rel@20"] for r in finished])[0]
            ratios[f"recall_rel@20 ours - recbole (mean of {len(seeds)} seeds)"] = mean - theirs
            ratios[f"time ours/recbole (total, mean of {len(seeds)} seeds)"] = (
                _mean_std([r["seconds_total"] for r in ours_runs])[0]
                / _mean_std([r["seconds_total"] for r in finished])[0]
            )
    report["ours_seeds"], report["recbole_seeds"] = ours_runs, recbole_runs
    report["ratios"] = ratios

    reached_text = ", ".join(f"{name} {sec:.1f} s" for name, sec in reached.items())
    markdown = "\n".join(
        [
            "# DiffRec benchmark (ML-1M clean, authors' settings, this machine)",
            "",
            "Test metrics use the released code's Recall (hits / |R|). Times in seconds.",
            "",
            markdown_table(rows),
            "",
            *(
                [
                    f"Time to the first validation Recall@20 (|R|) >= {target:.4f}, the lowest "
                    f"of the implementations' best validations: {reached_text}.",
                    "",
                ]
                if reached
                else []
            ),
            *(
                [
                    f"Seeds {', '.join(str(s) for s in seeds)} (mean ± std; the released code "
                    "fixes seed 1):",
                    "",
                    markdown_table(seed_rows),
                    "",
                ]
                if seed_rows
                else []
            ),
            "Times as ours / theirs (goal <= 1.0); Recall@20 as ours - theirs (goal >= 0).",
            "",
            markdown_table(_ratio_rows(ratios)) if ratios else "No peer ran: no ratios.",
            "",
        ]
    )
    write_atomic(folder / "bench.md", markdown)
    write_atomic(folder / "bench.json", json.dumps(report, indent=2, default=str))
    log.info("benchmark written to %s", folder / "bench.md")
    print(markdown)
    return report


def _mean_std(values: list[float]) -> tuple[float, float]:
    import numpy as np

    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _seed_row(name: str, runs: list[dict]) -> dict[str, str]:
    """Mean ± std over seeds of total time and the test metrics."""

    def cell(values: list[float], digits: int) -> str:
        mean, std = _mean_std(values)
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    row = {"implementation": name, "s total": cell([r["seconds_total"] for r in runs], 1)}
    for key, label in (
        ("recall_rel@10", "R@10 (|R|)"),
        ("recall_rel@20", "R@20 (|R|)"),
        ("ndcg@10", "N@10"),
        ("ndcg@20", "N@20"),
    ):
        row[label] = cell([r["test"][key] for r in runs], 4)
    return row


def _row(name, per_epoch, to_best, total, peak, test, epochs) -> dict[str, Any]:
    def seconds(value) -> str:
        return "—" if value is None else f"{float(value):.1f}"

    def metric(key: str) -> str:
        return "—" if test.get(key) is None else f"{float(test[key]):.4f}"

    return {
        "implementation": name,
        "epochs": epochs,
        "s/epoch (train)": seconds(per_epoch),
        "s to best valid": seconds(to_best),
        "s total": seconds(total),
        "peak RSS MB": "—" if peak is None else f"{float(peak):.0f}",
        "R@10 (|R|)": metric("recall_rel@10"),
        "R@20 (|R|)": metric("recall_rel@20"),
        "N@10": metric("ndcg@10"),
        "N@20": metric("ndcg@20"),
    }


def _ratio_rows(ratios: dict[str, float]) -> list[dict[str, str]]:
    """One row per ratio: times as ours / theirs (goal <= 1), metrics as ours - theirs."""
    return [
        {"measure": name, "value": f"{value:+.4f}" if " - " in name else f"{value:.2f}"}
        for name, value in ratios.items()
    ]


# --- RecBole's DiffRec -------------------------------------------------------------------

# RecBole and the few small packages it imports that our environment lacks. Installed with
# --no-deps next to (not into) our environment, so RecBole runs on our torch, numpy, scipy,
# pandas and scikit-learn; ray (hyper-parameter tuning only), plotly and hyperopt are left
# out: the driver below never imports recbole.quick_start, the only module that needs ray.
RECBOLE_VERSION = "1.2.1"
RECBOLE_PACKAGES = (
    f"recbole=={RECBOLE_VERSION}",
    "colorlog==4.7.2",  # pinned by recbole
    "colorama==0.4.4",  # pinned by recbole
    "texttable==1.7.2",
    "tabulate==0.10.0",
    "thop==0.1.1.post2209072238",
    # torch.utils.tensorboard, which RecBole's Trainer always opens
    "tensorboard==2.21.0",
    "protobuf==7.36.2",
    "absl-py==2.5.1",
)

# run only inside RecBole's process (PYTHONPATH), never imported by this package
_RECBOLE_SITECUSTOMIZE = """
import functools
import numpy as np
# RecBole's Config.compatibility_settings() reads aliases numpy 2 removed
for old, new in (("float_", "float64"), ("complex_", "complex128"), ("unicode_", "str_")):
    if old not in np.__dict__:
        setattr(np, old, getattr(np, new))
import torch
# torch >= 2.6 loads weights only by default; RecBole's own checkpoint pickles its Config
_load = torch.load
@functools.wraps(_load)
def _load_full(*args, **kwargs):
    kwargs.setdefault("weights_only", False)
    return _load(*args, **kwargs)
torch.load = _load_full
"""

# written next to the atomic files and run by RecBole's interpreter: the steps of
# recbole.quick_start.run_recbole (without ray's import and the FLOPs count), timing each
# training epoch and validation, then one JSON line with the times and the test result
_RECBOLE_DRIVER = r"""
import json, sys, time
import numpy as np
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_logger, init_seed

spec = json.load(open(sys.argv[1]))
if spec.get("threads"):
    torch.set_num_threads(spec["threads"])
started = time.perf_counter()
config = Config(model="DiffRec", dataset=spec["dataset"], config_dict=spec["config"])
init_seed(config["seed"], config["reproducibility"])
init_logger(config)
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)

# the splits RecBole built must be the files' pairs, in our ids
def pairs(part):
    users = part.id2token(part.uid_field, part.inter_feat[part.uid_field].numpy())
    items = part.id2token(part.iid_field, part.inter_feat[part.iid_field].numpy())
    return np.stack([users.astype(np.int64), items.astype(np.int64)], axis=1)

def digest(a):
    a = a[np.lexsort((a[:, 1], a[:, 0]))]
    return [len(a), int((a[:, 0] * 1000003 + a[:, 1]).sum() % 2**61)]

splits = {
    name: digest(pairs(loader._dataset))
    for name, loader in (("train", train_data), ("valid", valid_data), ("test", test_data))
}
init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
train_seconds, valid = [], []
fit_started = None
_train, _valid = trainer._train_epoch, trainer._valid_epoch

def train_epoch(*args, **kwargs):
    begin = time.perf_counter()
    out = _train(*args, **kwargs)
    train_seconds.append(time.perf_counter() - begin)
    return out

def valid_epoch(*args, **kwargs):
    begin = time.perf_counter()
    score, result = _valid(*args, **kwargs)
    end = time.perf_counter()
    valid.append({"epoch": len(train_seconds), "score": float(score),
                  "seconds": end - begin, "since_fit": end - fit_started,
                  "result": {k: float(v) for k, v in result.items()}})
    return score, result

trainer._train_epoch, trainer._valid_epoch = train_epoch, valid_epoch
fit_started = time.perf_counter()
trainer.fit(train_data, valid_data, saved=True, show_progress=False)
fit_seconds = time.perf_counter() - fit_started
begin = time.perf_counter()
test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
test_seconds = time.perf_counter() - begin
print("RECBOLE_RESULT " + json.dumps({
    "recbole": __import__("recbole").__version__,
    "torch": torch.__version__,
    "threads": torch.get_num_threads(),
    "n_users": int(dataset.user_num), "n_items": int(dataset.item_num),
    "splits": splits,
    "train_seconds": train_seconds, "valid": valid,
    "fit_seconds": fit_seconds, "test_seconds": test_seconds,
    "seconds_in_driver": time.perf_counter() - started,
    "test": {k: float(v) for k, v in test.items()},
}), flush=True)
"""

_RECBOLE_RESULT = re.compile(r"^RECBOLE_RESULT (\{.*\})\s*$", re.MULTILINE)


def write_atomic_files(splits: dict[str, Any], folder: Path, name: str) -> dict[str, Path]:
    """DiffRec's (user, item) pairs as RecBole atomic files ``<name>.<split>.inter``.

    Ids are written as tokens (RecBole remaps them internally and maps them back); the rows
    keep the file order. Returns the path of each split's file.
    """
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "valid", "test"):
        pairs = np.asarray(splits[split], dtype=np.int64).reshape(-1, 2)
        lines = ["user_id:token\titem_id:token"]
        lines += [f"{user}\t{item}" for user, item in pairs.tolist()]
        path = folder / f"{name}.{split}.inter"
        path.write_text("\n".join(lines) + "\n")
        paths[split] = path
    return paths


def read_atomic_file(path: Path):
    """The (user, item) int64 pairs of an atomic file written by :func:`write_atomic_files`."""
    import numpy as np

    lines = path.read_text().splitlines()
    if not lines or lines[0] != "user_id:token\titem_id:token":
        raise ValueError(f"{path} is not a user_id/item_id atomic file")
    rows = [line.split("\t") for line in lines[1:] if line]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def pairs_digest(pairs) -> list[int]:
    """Order-free fingerprint of (user, item) pairs: [count, checksum], as the driver computes."""
    import numpy as np

    a = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return [len(a), int((a[:, 0] * 1000003 + a[:, 1]).sum() % 2**61)]


def recbole_hidden_dims(dims) -> list[int]:
    """RecBole's ``dims_dnn`` for the denoiser our (and the released code's) ``dims`` build.

    The released code and ours read ``dims`` from the bottleneck outwards and mirror them:
    [200, 600] is items + emb -> 600 -> 200 -> 600 -> items. RecBole's ``dims_dnn`` lists the
    hidden widths in order (its DNN is [items] + dims_dnn + [items]), so passing [200, 600]
    unchanged would build items + emb -> 200 -> 600 -> items, a network with one layer less
    and about two thirds of the arithmetic, and the benchmark would time a different model.
    """
    dims = [int(d) for d in dims]
    return [*reversed(dims), *dims[1:]]


def recbole_settings(config: Config, n_items: int, use_gpu: bool, folder: Path) -> dict:
    """RecBole's config for its DiffRec: the authors' ML-1M settings in RecBole's key names.

    Keys from RecBole's ``properties/model/DiffRec.yaml`` (model) and its overall/dataset/
    evaluation defaults: the three benchmark files as train/valid/test (no re-split), full
    ranking, Recall and NDCG at 10 and 20, Recall@20 to select.
    """
    d, t = config.diffusion, config.train
    return {
        # data: our exact split, nothing filtered or re-split
        "data_path": str(folder),
        "benchmark_filename": ["train", "valid", "test"],
        "field_separator": "\t",
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id"]},
        "train_neg_sample_args": None,
        "eval_args": {
            "split": {"RS": [0.8, 0.1, 0.1]},  # ignored with benchmark_filename
            "order": "RO",
            "group_by": "user",
            "mode": "full",
        },
        "metrics": ["Recall", "NDCG"],
        "topk": [10, 20],
        "valid_metric": "Recall@20",
        "metric_decimal_place": 6,
        # training, as ours and the released code
        "epochs": config.bench.epochs,
        "eval_step": t.eval_every,
        "stopping_step": max(1, t.early_stop_epochs // t.eval_every),
        "train_batch_size": t.batch_size,
        # full-sort batches are counted in (user, item) scores: this many users at once
        "eval_batch_size": t.eval_batch_size * (n_items + 1),
        "learner": "adam",
        "learning_rate": t.lr,
        "weight_decay": t.weight_decay,
        "seed": t.seed,
        "reproducibility": True,
        "use_gpu": use_gpu,
        "gpu_id": "0",
        "worker": 0,
        "show_progress": False,
        "checkpoint_dir": str(folder / "saved"),
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        # DiffRec, the authors' ML-1M clean settings
        "noise_schedule": d.noise_schedule,
        "noise_scale": d.noise_scale,
        "noise_min": d.noise_min,
        "noise_max": d.noise_max,
        "steps": d.steps,
        "sampling_steps": d.noise_steps,
        "sampling_noise": False,
        "reweight": d.reweight,
        "mean_type": d.mean_type,
        "history_num_per_term": d.history_per_step,
        "beta_fixed": d.fix_first_beta,
        "dims_dnn": recbole_hidden_dims(config.denoiser.dims),
        "embedding_size": config.denoiser.emb_size,
        "mlp_act_func": "tanh",
        "norm": config.denoiser.norm,
        "time-aware": False,
    }


def parse_recbole_output(text: str) -> dict[str, Any]:
    """The driver's JSON line as a report entry: times, best validation, test metrics."""
    found = _RECBOLE_RESULT.findall(text)
    if not found:
        return {}
    raw = json.loads(found[-1])
    train_seconds = raw["train_seconds"]
    valid = raw["valid"]
    parsed: dict[str, Any] = {
        "epochs": len(train_seconds),
        "epoch_seconds": [round(s, 2) for s in train_seconds],
        "seconds_per_epoch": round(sum(train_seconds) / max(len(train_seconds), 1), 2),
        "seconds_fit": round(raw["fit_seconds"], 1),
        "seconds_test": round(raw["test_seconds"], 1),
        "seconds_per_validation": round(sum(v["seconds"] for v in valid) / max(len(valid), 1), 1),
        "recbole": raw.get("recbole"),
        "threads": raw.get("threads"),
        "n_users": raw.get("n_users"),  # RecBole counts its padding id 0
        "n_items": raw.get("n_items"),
        "splits": raw.get("splits"),
    }
    parsed["validations"] = [
        {
            "epoch": v["epoch"],
            "recall_rel@20": v["result"]["recall@20"],
            "since_fit": v["since_fit"],
        }
        for v in valid
    ]
    if valid:
        # RecBole keeps the first of equal scores (strictly better updates)
        best = max(valid, key=lambda v: (v["score"], -v["epoch"]))
        parsed["best_epoch"] = best["epoch"]
        parsed["seconds_to_best"] = round(best["since_fit"], 1)
        parsed["valid"] = _recbole_metrics(best["result"])
    parsed["test"] = _recbole_metrics(raw["test"])
    return parsed


def _recbole_metrics(result: dict[str, float]) -> dict[str, float]:
    # RecBole's Recall divides by |R| (all of the user's relevant items), as the released code
    return {
        "recall_rel@10": result["recall@10"],
        "recall_rel@20": result["recall@20"],
        "ndcg@10": result["ndcg@10"],
        "ndcg@20": result["ndcg@20"],
    }


def recbole_site() -> Path:
    """Where RecBole is installed for the benchmark: a cache folder outside the repository."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "paperstack" / f"recbole-{RECBOLE_VERSION}"


def ensure_recbole_site(site: Path) -> str | None:
    """Install RecBole's pinned packages into ``site`` if missing; return why it failed, or None."""
    if (site / "recbole" / "__init__.py").exists():
        return None
    uv = shutil.which("uv")
    if uv:
        base = [uv, "pip", "install", "--python", sys.executable]
    else:
        base = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    staging = site.with_name(site.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    command = [*base, "--no-deps", "--target", str(staging), *RECBOLE_PACKAGES]
    log.info("installing RecBole for the benchmark: %s", " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"installing {RECBOLE_PACKAGES[0]} failed: {error}"
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        return f"installing {RECBOLE_PACKAGES[0]} failed: {(done.stderr or done.stdout)[-800:]}"
    site.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(site)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return None


def run_recbole(config: Config) -> dict[str, Any]:
    """RecBole's DiffRec on DiffRec's exact split, in its own process; a skip reason if it can't."""
    import torch

    from shared.data.movielens import load_diffrec

    python = config.bench.recbole_python
    pythonpath: list[str] = []
    if not python:
        site = Path(config.bench.recbole_site).expanduser() if config.bench.recbole_site else None
        site = site or recbole_site()
        failed = ensure_recbole_site(site)
        if failed:
            log.warning("skipping RecBole: %s (or set bench.recbole_python)", failed)
            return {"skipped": failed}
        python, pythonpath = sys.executable, [str(site)]
    splits = load_diffrec(config.data.dataset)
    name = config.data.dataset
    use_gpu = config.train.device != "cpu" and torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="diffrec-recbole-") as scratch:
        folder = Path(scratch)
        pairs = {s: getattr(splits, s).numpy() for s in ("train", "valid", "test")}
        write_atomic_files(pairs, folder / name, name)
        Path(scratch, "sitecustomize.py").write_text(_RECBOLE_SITECUSTOMIZE)
        Path(scratch, "driver.py").write_text(_RECBOLE_DRIVER)
        spec = {
            "dataset": name,
            "threads": config.train.threads,
            "config": recbole_settings(config, splits.n_items, use_gpu, folder),
        }
        Path(scratch, "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([scratch, *pythonpath])}
        command = [python, "-u", str(folder / "driver.py"), str(folder / "spec.json")]
        log.info("running RecBole's DiffRec: %s", " ".join(command))
        output, measured = _run_peer(command, folder, env, config.bench.timeout_s)
    parsed = parse_recbole_output(output)
    parsed.update(measured)
    if "test" not in parsed:
        parsed["log_tail"] = output[-2000:]
        log.warning("RecBole printed no result; its log ends with:\n%s", output[-2000:])
        return parsed
    expected = {s: pairs_digest(p) for s, p in pairs.items()}
    if parsed.get("splits") != expected:
        raise RuntimeError(
            f"RecBole's splits {parsed.get('splits')} differ from DiffRec's files {expected}"
        )
    parsed["splits_match"] = True
    return parsed


if __name__ == "__main__":
    _ours_in_this_process(sys.argv[1])
