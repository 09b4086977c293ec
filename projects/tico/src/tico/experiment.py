"""`tico reproduce`: the paper's experiments as code, written to runs/tico/reproduce-<scale>/.

1. comparison: TiCo against Barlow Twins (same backbone, augmentations and budget) over
   several seeds, beside the same encoder at random initialisation;
2. batch_size: both methods at batch sizes from 32 to 512 with the same number of images
   seen, the paper's small-batch claim;
3. rho and beta: sweeps of TiCo's two hyper-parameters.

Every training run is an ordinary run folder under ``reproduce-<scale>/runs/``, named by the
settings it varies, so an interrupted reproduction resumes where it stopped and runs shared
by two experiments (TiCo at the default rho, beta and batch size) are trained once.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from shared.config import ConfigError, to_dict
from shared.report import reproduction_folder_name
from shared.runs import markdown_table, runs_root, write_atomic
from tico.config import TiCoConfig

log = logging.getLogger(__name__)

# public numbers to set ours beside (ImageNet, ResNet-50, batch 256, 100 epochs): lightly's
# benchmark table at docs.lightly.ai/getting_started/benchmarks.html, read 2026
LIGHTLY_IMAGENET = {
    "tico": {"linear_acc": 0.497, "knn_acc": 0.266},
    "barlow_twins": {"linear_acc": 0.629, "knn_acc": 0.456},
}
METHOD_NAMES = {"tico": "TiCo", "barlow_twins": "Barlow Twins"}


def with_overrides(config: TiCoConfig, overrides: list[str]) -> TiCoConfig:
    """``config`` with dotted ``key=value`` overrides applied (validated like the CLI's)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(config), OmegaConf.from_dotlist(overrides))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(f"invalid experiment override in {overrides}: {error}") from None


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


class Reproduction:
    """Trains (or reuses) the runs of each experiment and collects their results."""

    def __init__(self, config: TiCoConfig, root: Path):
        self.base = with_overrides(config, list(config.experiment.base_overrides))
        self.root = root
        self.runs_dir = root / "runs"

    def run(
        self,
        method: str,
        seed: int | None = None,
        batch_size: int | None = None,
        rho: float | None = None,
        beta: float | None = None,
        max_steps: int | None = None,
    ) -> dict[str, Any]:
        """Train one configuration (or read its finished run) and return its results."""
        from tico.training import train

        base = self.base
        seed = base.seed if seed is None else seed
        batch_size = base.data.batch_size if batch_size is None else batch_size
        rho = base.loss.rho if rho is None else rho
        beta = base.loss.beta if beta is None else beta
        overrides = [
            f"loss.method={method}",
            f"seed={seed}",
            f"data.batch_size={batch_size}",
            f"loss.rho={rho}",
            f"loss.beta={beta}",
        ]
        name = f"{method}-seed{seed}-bs{batch_size}"
        if method == "tico":
            name += f"-rho{rho:g}-beta{beta:g}"
        if max_steps is not None:
            # the same images seen at every batch size: steps = images / batch size
            epochs = math.ceil(max_steps * batch_size / self._train_images()) + 1
            overrides += [f"trainer.max_steps={max_steps}", f"trainer.max_epochs={epochs}"]
            name += f"-steps{max_steps}"
        config = with_overrides(base, [*overrides, f"name={name}"])
        log.info("reproduce: run %s", name)
        return train(config, resume=True, root=self.root, project="runs")

    def random_init(self, seed: int) -> dict[str, Any]:
        """The same encoder, untrained: the floor that pre-training must clear."""
        from tico.data import SelfSupervisedData
        from tico.module import SelfSupervised
        from tico.training import offline_evaluation, resolve_hardware

        cache = self.runs_dir / f"random-init-seed{seed}.json"
        if cache.exists():
            return json.loads(cache.read_text())
        import lightning as L

        config = with_overrides(self.base, [f"seed={seed}"])
        device, precision = resolve_hardware(config)
        L.seed_everything(seed, verbose=False)
        datamodule = SelfSupervisedData(config)
        datamodule.setup()
        module = SelfSupervised(config, num_classes=datamodule.num_classes)
        results = offline_evaluation(module, datamodule, config, device, precision)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, json.dumps(results))
        return results

    def _train_images(self) -> int:
        if self.base.data.train_images:
            return self.base.data.train_images
        from tico.data import SelfSupervisedData

        datamodule = SelfSupervisedData(self.base)
        datamodule.setup()
        return len(datamodule.train_set)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- experiments
def comparison(repro: Reproduction) -> dict[str, Any]:
    experiment = repro.base.experiment
    rows: dict[str, Any] = {}
    for method in experiment.methods:
        rows[method] = [repro.run(method, seed=seed) for seed in experiment.seeds]
    rows["random_init"] = [repro.random_init(seed) for seed in experiment.seeds]
    summary = {}
    for method, results in rows.items():
        summary[method] = {
            key: _mean_std([r[key] for r in results])
            for key in ("knn_acc", "linear_acc", "feature_effective_rank")
        }
        for fraction in results[0]["semi_supervised"]:
            for key in ("knn_acc", "linear_acc"):
                summary[method][f"{key}@{fraction}"] = _mean_std(
                    [r["semi_supervised"][fraction][key] for r in results]
                )
    spectra = {m: rows[m][0].get("spectra", []) for m in experiment.methods}
    return {"seeds": list(experiment.seeds), "summary": summary, "spectra": spectra}


def batch_size_sweep(repro: Reproduction) -> dict[str, Any]:
    experiment = repro.base.experiment
    table: dict[str, dict[int, dict[str, float]]] = {m: {} for m in experiment.methods}
    for batch_size in experiment.batch_sizes:
        steps = max(experiment.batch_sweep_images // batch_size, 1)
        for method in experiment.methods:
            result = repro.run(method, batch_size=batch_size, max_steps=steps)
            table[method][batch_size] = {
                "steps": steps,
                "knn_acc": result["knn_acc"],
                "linear_acc": result["linear_acc"],
            }
    return {"images_seen": experiment.batch_sweep_images, "table": table}


def sweep(repro: Reproduction, parameter: str) -> dict[str, Any]:
    values = repro.base.experiment.rhos if parameter == "rho" else repro.base.experiment.betas
    table = {}
    for value in values:
        result = repro.run("tico", **{parameter: value})
        table[f"{value:g}"] = {
            "knn_acc": result["knn_acc"],
            "linear_acc": result["linear_acc"],
            "feature_effective_rank": result["feature_effective_rank"],
        }
    return {"parameter": parameter, "table": table}


# --------------------------------------------------------------------------- report
def _pm(value: tuple[float, float], digits: int = 3) -> str:
    return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"


def _plot_batch_sizes(result: dict[str, Any], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for method, rows in result["table"].items():
        sizes = sorted(rows)
        axis.plot(
            sizes, [rows[s]["knn_acc"] for s in sizes], marker="o", label=METHOD_NAMES[method]
        )
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("kNN top-1")
    axis.set_title(f"same images seen ({result['images_seen']:,})")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_spectra(spectra: dict[str, list[dict[str, Any]]], path: Path) -> None:
    methods = [m for m, records in spectra.items() if records]
    figure, axes = plt.subplots(1, max(len(methods), 1), figsize=(5 * max(len(methods), 1), 3.5))
    axes = axes if hasattr(axes, "__len__") else [axes]
    for axis, method in zip(axes, methods, strict=False):
        records = spectra[method]
        colours = plt.cm.viridis([i / max(len(records) - 1, 1) for i in range(len(records))])
        for record, colour in zip(records, colours, strict=True):
            values = [max(v, 1e-12) for v in record["embedding_eigenvalues"]]
            axis.plot(
                range(1, len(values) + 1),
                values,
                color=colour,
                label=f"epoch {record['epoch'] + 1} "
                f"(rank {record['embedding_effective_rank']:.1f})",
            )
        axis.set_yscale("log")
        axis.set_xscale("log")
        axis.set_xlabel("eigenvalue index")
        axis.set_ylabel("eigenvalue")
        axis.set_title(f"{METHOD_NAMES[method]}: embedding covariance spectrum")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_sweep(result: dict[str, Any], path: Path) -> None:
    values = list(result["table"])
    figure, axis = plt.subplots(figsize=(4.5, 3.2))
    axis.plot(values, [result["table"][v]["knn_acc"] for v in values], marker="o", label="kNN")
    axis.plot(
        values, [result["table"][v]["linear_acc"] for v in values], marker="s", label="linear"
    )
    axis.set_xlabel(result["parameter"])
    axis.set_ylabel("top-1")
    axis.set_title(f"TiCo: {result['parameter']} sweep")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(config: TiCoConfig, root: Path, results: dict[str, Any]) -> None:
    base = with_overrides(config, list(config.experiment.base_overrides))
    scale = config.scale
    lines = [
        f"# TiCo reproduction ({scale} scale)",
        "",
        f"CIFAR-10, {base.model.backbone} ({base.model.stem} stem, width {base.model.width}), "
        f"projector {base.model.projector}, {base.data.train_images or 'all'} training images, "
        f"{base.data.test_images or 'all'} test images, batch {base.data.batch_size}, "
        f"{base.trainer.max_epochs} epochs, {base.optim.name} lr {base.optim.lr}. "
        f"kNN: k={base.eval.knn_k}, T={base.eval.knn_temperature}.",
    ]
    if scale == "smoke":
        lines += [
            "",
            "**Smoke scale**: minutes of CPU training. These numbers show the direction of the "
            "effects only; they are far from converged and say nothing about final accuracy.",
        ]

    # checks
    lines += ["", "## Checks", "", markdown_table(results["checks"])]

    comparison_result = results.get("comparison")
    if comparison_result:
        rows = []
        for method, summary in comparison_result["summary"].items():
            row = {
                "encoder": METHOD_NAMES.get(method, "random init"),
                "kNN": _pm(summary["knn_acc"]),
                "linear": _pm(summary["linear_acc"]),
            }
            for key, value in summary.items():
                if "@" in key:
                    metric, fraction = key.split("@")
                    label = f"{'kNN' if metric == 'knn_acc' else 'linear'} {float(fraction):.0%}"
                    row[label] = _pm(value)
            row["eff. rank"] = f"{summary['feature_effective_rank'][0]:.1f}"
            rows.append(row)
        reference = [
            {"method": METHOD_NAMES[m], "linear": v["linear_acc"], "kNN": v["knn_acc"]}
            for m, v in LIGHTLY_IMAGENET.items()
        ]
        lines += [
            "",
            f"## 1. TiCo vs Barlow Twins ({len(comparison_result['seeds'])} seeds, mean ± std)",
            "",
            markdown_table(rows),
            "",
            "Semi-supervised columns: frozen encoder, kNN / linear probe fitted on a "
            "class-balanced 1% or 10% of the training labels.",
            "",
            "For reference (not comparable: ImageNet, ResNet-50, batch 256, 100 epochs), "
            "lightly's public benchmark of its TiCo and Barlow Twins implementations:",
            "",
            markdown_table(reference, digits=3),
            "",
            "![spectrum over training](spectrum.png)",
        ]

    batch_result = results.get("batch_size")
    if batch_result:
        methods = list(batch_result["table"])
        sizes = sorted(next(iter(batch_result["table"].values())))
        rows = []
        for size in sizes:
            row: dict[str, Any] = {
                "batch": size,
                "steps": batch_result["table"][methods[0]][size]["steps"],
            }
            for method in methods:
                row[f"{METHOD_NAMES[method]} kNN"] = batch_result["table"][method][size]["knn_acc"]
            rows.append(row)
        lines += [
            "",
            f"## 2. Small batches: same {batch_result['images_seen']:,} images seen",
            "",
            markdown_table(rows, digits=3),
            "",
            batch_result["verdict"],
            "",
            "![accuracy against batch size](batch_size.png)",
        ]

    for parameter in ("rho", "beta"):
        sweep_result = results.get(parameter)
        if sweep_result:
            rows = [{parameter: value, **scores} for value, scores in sweep_result["table"].items()]
            lines += [
                "",
                f"## 3. TiCo {parameter} sweep",
                "",
                markdown_table(rows, digits=3),
                "",
                f"![{parameter} sweep]({parameter}.png)",
            ]
    write_atomic(root / "results.md", "\n".join(lines) + "\n")


def _batch_verdict(result: dict[str, Any]) -> str:
    table = result["table"]
    if not {"tico", "barlow_twins"} <= set(table) or len(table["tico"]) < 2:
        return "Needs both methods and at least two batch sizes for a verdict."
    sizes = sorted(table["tico"])
    small, large = sizes[0], sizes[-1]
    drop = {
        m: table[m][large]["knn_acc"] - table[m][small]["knn_acc"] for m in ("tico", "barlow_twins")
    }
    less = drop["tico"] < drop["barlow_twins"]
    return (
        f"From batch {large} to {small}, TiCo's kNN accuracy changes by {-drop['tico']:+.3f} and "
        f"Barlow Twins' by {-drop['barlow_twins']:+.3f}: TiCo "
        + ("degrades less" if less else "does not degrade less")
        + " here (one seed per point)."
    )


def _finish(config: TiCoConfig, root: Path, results: dict[str, Any]) -> None:
    """Write results.md and results.json for what has run so far."""
    results["passed"] = all(check["passed"] for check in results["checks"])
    write_report(config, root, results)
    write_atomic(root / "results.json", json.dumps(results, indent=2) + "\n")


def reproduce(config: TiCoConfig, resume: bool = True) -> dict[str, Any]:
    """Run the experiments in ``config.experiment.run`` and write results.json/results.md.

    The report is rewritten after each experiment, so a reproduction stopped half-way still
    shows what it finished; rerunning it reuses every finished run.
    """
    root = runs_root() / "tico" / reproduction_folder_name(config.scale)
    root.mkdir(parents=True, exist_ok=True)

    # the training settings must match the runs already in the folder (the experiment list
    # may grow: finished runs are reused)
    saved = root / "config.json"
    resolved = {k: v for k, v in to_dict(config).items() if k not in ("experiment", "bench")}
    if saved.exists() and json.loads(saved.read_text()) != resolved:
        raise ConfigError(
            f"{root} holds a reproduction with other training settings; delete that folder "
            "(or move it) to start this one"
        )
    write_atomic(saved, json.dumps(resolved, indent=2))
    repro = Reproduction(config, root)
    experiment = repro.base.experiment
    results: dict[str, Any] = {"scale": config.scale, "checks": []}

    if "comparison" in experiment.run:
        results["comparison"] = comparison(repro)
        summary = results["comparison"]["summary"]
        gain = summary["tico"]["knn_acc"][0] - summary["random_init"]["knn_acc"][0]
        results["checks"].append(
            {
                "check": f"TiCo kNN beats the random-init encoder by >= {experiment.min_knn_gain}",
                "value": round(gain, 4),
                "passed": gain >= experiment.min_knn_gain,
            }
        )
        _plot_spectra(results["comparison"]["spectra"], root / "spectrum.png")
        _finish(config, root, results)
    if "batch_size" in experiment.run:
        results["batch_size"] = batch_size_sweep(repro)
        results["batch_size"]["verdict"] = _batch_verdict(results["batch_size"])
        _plot_batch_sizes(results["batch_size"], root / "batch_size.png")
        _finish(config, root, results)
    for parameter in ("rho", "beta"):
        if parameter in experiment.run:
            results[parameter] = sweep(repro, parameter)
            _plot_sweep(results[parameter], root / f"{parameter}.png")
            _finish(config, root, results)

    _finish(config, root, results)
    results["report"] = str(root / "results.md")
    log.info("reproduction written to %s (passed: %s)", root, results["passed"])
    return results
