"""Benchmark: our DiffRec against the authors' released code (and RecBole's DiffRec) in one run.

Same split (ML-1M clean), same hyper-parameters (the authors' ML-1M settings), same
machine, one after the other. Measured: wall-clock time per training epoch, time to the best
validation Recall@20, total time, peak resident memory, and the test metrics under the
released code's Recall definition (hits / |R|), which is the only one it prints.

The released code is never copied into this repository: ``bench.released_code`` points at a
checkout of YiyanXu/DiffRec kept elsewhere (e.g. a temporary folder). It needs two
compatibility shims to run on today's libraries, installed only for its process through a
``sitecustomize`` module: SciPy removed ``spmatrix.A`` (the code densifies with ``.A``),
and it imports ``bottleneck`` without using it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import resource
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
        started = time.perf_counter()
        cpu_before = _cpu_seconds(resource.RUSAGE_CHILDREN)
        output, timed_out, peak_mb = _run_watching_memory(
            command, script_dir, env, config.bench.timeout_s
        )
        seconds = time.perf_counter() - started
        cpu_seconds = _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    parsed = parse_released_log(output)
    parsed.update(
        {
            "seconds_total": round(seconds, 1),
            "timed_out": timed_out,
            "cpu_seconds": round(cpu_seconds, 1),
            "peak_rss_mb": round(peak_mb, 1),
        }
    )
    if "test" not in parsed:
        parsed["log_tail"] = output[-2000:]
    return parsed


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


def bench(config: Config) -> dict[str, Any]:
    """Run ours and the peers on ML-1M clean; write runs/diffusion_rec/bench/bench.{md,json}."""
    folder = runs_root() / "diffusion_rec" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    ours_config = copy.deepcopy(config)
    ours_config.model = "diffrec"
    ours_config.train.max_epochs = config.bench.epochs
    ours_config.data.dataset = "ml-1m_clean"
    ours_config.parity.recall_denominator = "relevant"  # select as the released code does
    before = _cpu_seconds(resource.RUSAGE_SELF)
    ours = fit_and_evaluate(ours_config)
    ours["cpu_seconds"] = round(_cpu_seconds(resource.RUSAGE_SELF) - before, 1)
    report: dict[str, Any] = {"ours": ours, "released": None, "recbole": None}
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
    if config.bench.recbole:
        report["recbole"] = run_recbole(config)

    rows = [
        _row(
            "ours (Lightning)",
            ours.get("seconds_per_epoch"),
            ours.get("seconds_to_best"),
            ours.get("seconds_fit"),
            ours.get("peak_rss_mb"),
            ours["test"],
            ours["epochs"],
        )
    ]
    ratios = {}
    released = report["released"]
    if released and "test" in released:
        # its per-epoch "costs" include the validation + test ranking every 5th epoch
        seconds = released["epoch_seconds"]
        train_only = [s for i, s in enumerate(seconds, start=1) if i % 5]
        per_epoch = sum(train_only) / max(len(train_only), 1)
        to_best = sum(seconds[: released.get("best_epoch", len(seconds))])
        released["seconds_to_best"] = to_best
        rows.append(
            _row(
                "released code",
                per_epoch,
                to_best,
                released["seconds_total"],
                released["peak_rss_mb"],
                released["test"],
                released["epochs"],
            )
        )
        ratios["time ours/released (total)"] = ours["seconds_fit"] / released["seconds_total"]
        ratios["cpu time ours/released"] = ours["cpu_seconds"] / max(released["cpu_seconds"], 1e-9)
        ratios["time ours/released (to best)"] = ours["seconds_to_best"] / max(to_best, 1e-9)
        ratios["time ours/released (per epoch)"] = ours["seconds_per_epoch"] / max(per_epoch, 1e-9)
        ratios["recall_rel@20 ours - released"] = (
            ours["test"]["recall_rel@20"] - released["test"]["recall_rel@20"]
        )
    recbole = report["recbole"]
    if recbole and "test" in recbole:
        rows.append(
            _row(
                "RecBole DiffRec",
                recbole.get("seconds_per_epoch"),
                None,
                recbole["seconds_total"],
                None,
                recbole["test"],
                recbole.get("epochs"),
            )
        )
        ratios["time ours/recbole (total)"] = ours["seconds_fit"] / recbole["seconds_total"]
    report["ratios"] = ratios
    markdown = "\n".join(
        [
            "# DiffRec benchmark (ML-1M clean, authors' settings, this machine)",
            "",
            "Test metrics use the released code's Recall (hits / |R|). Times in seconds.",
            "",
            markdown_table(rows),
            "",
            "Ratios: " + json.dumps(ratios),
            "",
        ]
    )
    write_atomic(folder / "bench.md", markdown)
    write_atomic(folder / "bench.json", json.dumps(report, indent=2, default=str))
    log.info("benchmark written to %s", folder / "bench.md")
    print(markdown)
    return report


def _row(name, per_epoch, to_best, total, peak, test, epochs) -> dict[str, Any]:
    return {
        "implementation": name,
        "epochs": epochs,
        "s/epoch (train)": per_epoch if per_epoch is not None else "—",
        "s to best valid": to_best if to_best is not None else "—",
        "s total": total,
        "peak RSS MB": peak if peak is not None else "—",
        "R@10 (|R|)": test.get("recall_rel@10"),
        "R@20 (|R|)": test.get("recall_rel@20"),
        "N@10": test.get("ndcg@10"),
        "N@20": test.get("ndcg@20"),
    }


def run_recbole(config: Config) -> dict[str, Any] | None:
    """RecBole's DiffRec on the same split, if the ``recbole`` package is installed."""
    try:
        import recbole  # noqa: F401
    except ImportError:
        log.warning("recbole is not installed (uv sync --group bench): skipping RecBole")
        return None
    # Limitation: RecBole reads its own atomic files and splits them itself; running it on
    # DiffRec's exact split needs a conversion that is not written yet.
    log.warning("RecBole's DiffRec on DiffRec's split is not wired up yet: skipping it")
    return None
