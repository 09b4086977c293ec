"""DiffRec's experiments as code: the results table, clean vs noisy, and the two sweeps.

``reproduce`` trains every model of ``experiment.models`` on every dataset and seed, writes
the table of test metrics beside the targets, the clean-versus-noisy comparison (DiffRec's
robustness claim, Wang et al. 2023 Sec. 4.2), and plots of Recall@20 / NDCG@20 against the
number of diffusion steps and the noise scale (their Fig. 6 and 7, at our scale).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from diffusion_rec.config import (
    DETERMINISTIC_MODELS,
    DIFFUSION_MODELS,
    TEMPORAL_MODELS,
    Config,
)
from diffusion_rec.data import RecData
from diffusion_rec.training import fit_and_evaluate, load_data_for
from shared.config import ConfigError
from shared.report import reproduction_folder_name
from shared.runs import Run, markdown_table

log = logging.getLogger(__name__)

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
RELEASED_METRICS = ("recall_rel@10", "recall_rel@20", "ndcg@10", "ndcg@20")

# The issue's targets: the authors' released code with its ML-1M clean settings on 2 CPU
# cores (its Recall divides by |R|), and a public L-DiffRec report on the same split.
TARGETS = {
    ("diffrec", "ml-1m_clean"): {
        "recall_rel@10": 0.1007,
        "recall_rel@20": 0.1697,
        "ndcg@10": 0.0862,
        "ndcg@20": 0.1094,
    },
    ("ldiffrec", "ml-1m_clean"): {"recall_rel@20": 0.173, "ndcg@20": 0.1085},
}
DISPLAY = {
    "diffrec": "DiffRec",
    "tdiffrec": "T-DiffRec",
    "ldiffrec": "L-DiffRec",
    "ltdiffrec": "LT-DiffRec",
    "mostpop": "MostPop",
    "ease": "EASE",
    "tease": "T-EASE",
    "multvae": "MultVAE",
    "lightgcn": "LightGCN",
}


def experiment_overrides(base: Config, dataset: str, model: str) -> list[str]:
    """The config's dotted settings for ``model`` on ``dataset``, in the order they apply.

    ``experiment.dataset_overrides[dataset]``, then ``model_overrides[model]``, then
    ``model_overrides["model@dataset"]``; ``reproduce`` and ``train`` both read them here.
    """
    experiment = base.experiment
    return [
        *experiment.dataset_overrides.get(dataset, []),
        *experiment.model_overrides.get(model, []),
        *experiment.model_overrides.get(f"{model}@{dataset}", []),
    ]


def run_config(base: Config, dataset: str, model: str, seed: int, **overrides: Any) -> Config:
    """The config of one run: the base, then the dataset's and model's overrides, then ours."""
    dotted = [f"model={model}", f"data.dataset={dataset}", f"train.seed={seed}"]
    dotted += experiment_overrides(base, dataset, model)
    dotted += [f"{key}={value}" for key, value in overrides.items()]
    try:
        merged = OmegaConf.merge(OmegaConf.structured(base), OmegaConf.from_dotlist(dotted))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(f"bad override among {dotted}: {error}") from None


class Ledger:
    """Finished runs of a reproduction, one JSON line each, so a crashed reproduction resumes."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.records[record["key"]] = record

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, key: str, result: dict) -> None:
        record = {"key": key, **result}
        self.records[key] = record
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def _run_once(ledger: Ledger, key: str, config: Config, data: RecData) -> dict:
    found = ledger.get(key)
    if found is not None:
        log.info("reusing finished run %s", key)
        return found
    log.info("run %s", key)
    result = fit_and_evaluate(config, data)
    ledger.add(key, result)
    return ledger.get(key)  # type: ignore[return-value]


def reproduce(config: Config, resume: bool = False) -> dict[str, Any]:
    """Run the experiment of ``config.experiment`` and write results.md / results.json."""
    run = Run.start("diffusion_rec", reproduction_folder_name(config.scale), config, resume=resume)
    ledger = Ledger(run.path / "runs.jsonl")
    experiment = config.experiment
    results: list[dict] = []

    # main table: every model, dataset and seed
    for dataset in experiment.datasets:
        cache: dict[tuple, RecData] = {}
        for model in experiment.models:
            seeds = [experiment.seeds[0]] if model in DETERMINISTIC_MODELS else experiment.seeds
            for seed in seeds:
                run_cfg = run_config(config, dataset, model, seed)
                temporal = model in TEMPORAL_MODELS
                if temporal not in cache:
                    cache[temporal] = load_data_for(run_cfg)
                result = _run_once(ledger, f"{dataset}/{model}/{seed}", run_cfg, cache[temporal])
                results.append(result)

    # sweeps on the first dataset: diffusion steps and noise scale
    sweeps = {"steps": [], "noise_scale": []}
    dataset = experiment.datasets[0]
    sweep_data = None
    for parameter, values in (
        ("diffusion.steps", experiment.sweep_steps),
        ("diffusion.noise_scale", experiment.sweep_noise_scales),
    ):
        for value in values:
            overrides = {parameter: value, "train.max_epochs": experiment.sweep_epochs}
            if parameter == "diffusion.noise_scale" and experiment.sweep_noise_steps:
                overrides["diffusion.steps"] = experiment.sweep_noise_steps
            run_cfg = run_config(config, dataset, "diffrec", experiment.seeds[0], **overrides)
            sweep_data = sweep_data or load_data_for(run_cfg)
            key = f"sweep/{dataset}/{parameter}={value}"
            result = _run_once(ledger, key, run_cfg, sweep_data)
            sweeps[parameter.split(".")[1]].append({"value": value, **result["test"]})

    # sequential diffusion (DreamRec vs SASRec) and diffusion augmentation on ML-100K
    sequential = None
    if config.sequential.enabled:
        sequential = ledger.get("sequential")
        if sequential is None:
            from diffusion_rec.sequential import sequential_experiment

            sequential = sequential_experiment(config.sequential, experiment.seeds)
            ledger.add("sequential", sequential)

    # content presentation: preference-conditioned images (CIFAR-10 as stand-in items)
    content = None
    if config.content.enabled:
        content = ledger.get("content")
        if content is None:
            content = run_content(config, run.path)
            ledger.add("content", content)

    summary = summarise(results, config)
    if sequential is not None:
        summary["sequential"] = summarise_sequential(sequential)
    if content is not None:
        summary["content"] = content
    plots = plot_sweeps(sweeps, run.path, dataset)
    markdown = render(summary, sweeps, plots, config)
    run.write_results({**summary, "sweeps": sweeps, "runs": results}, markdown)
    return summary


def run_content(config: Config, folder: Path) -> dict:
    """Train the preference-conditioned image model; write its metrics and a sample grid.

    ``content_metrics.json`` holds the judge's accuracy on real images and the alignment of
    generated images (overall, per class, unconditional reference); ``content_samples.png``
    shows one row of generated images per preferred category.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffusion_rec.content import content_experiment

    c = config.content
    result = content_experiment(c, config.experiment.seeds[0])
    images, classes = result.pop("images"), result.pop("classes")

    # one row per preferred category, labelled with its alignment
    rows, columns = len(classes), min(c.per_category, 10)
    figure, axes = plt.subplots(rows, columns, figsize=(columns, rows), squeeze=False)
    for row, name in enumerate(classes):
        for column in range(columns):
            axis = axes[row][column]
            image = images[row * c.per_category + column].permute(1, 2, 0).numpy()
            axis.imshow(image, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        aligned = result["alignment_per_class"][name]
        axes[row][0].set_ylabel(f"{name}\n{aligned:.2f}", fontsize=7)
    figure.suptitle(
        f"generated for a one-hot preference ({c.image_size}x{c.image_size}); "
        f"row label: share the judge assigns to that category",
        fontsize=7,
    )
    figure.tight_layout()
    figure.savefig(folder / "content_samples.png", dpi=100)
    plt.close(figure)
    result["grid"] = "content_samples.png"
    (folder / "content_metrics.json").write_text(json.dumps(result, indent=2))
    log.info("content: metrics and samples written to %s", folder)
    return result


def summarise_sequential(sequential: dict) -> list[dict]:
    """Mean test metrics per sequential model (and the augmented SASRec) over seeds."""
    groups: dict[str, list[dict]] = {}
    for result in sequential["runs"] + sequential["augmentation"]:
        groups.setdefault(result["model"], []).append(result["test"])
    rows = []
    for model, tests in groups.items():
        row: dict[str, Any] = {"model": model, "seeds": len(tests)}
        for metric in METRICS:
            values = [t[metric] for t in tests]
            row[metric] = float(np.mean(values))
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def summarise(results: list[dict], config: Config) -> dict[str, Any]:
    """Means and spreads over seeds, the smoke assertion, and the clean-vs-noisy drops."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for result in results:
        groups.setdefault((result["dataset"], result["model"]), []).append(result)
    table = []
    for (dataset, model), runs in groups.items():
        row = {"dataset": dataset, "model": model, "seeds": len(runs)}
        for metric in sorted(set(METRICS) | set(RELEASED_METRICS)):
            values = [r["test"][metric] for r in runs]
            row[metric] = float(np.mean(values))
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        row["seconds_fit"] = float(np.mean([r["seconds_fit"] for r in runs]))
        row["epochs"] = float(np.mean([r["epochs"] for r in runs]))
        table.append(row)

    # the smoke assertion: DiffRec beats most-popular on Recall@20 (each dataset)
    checks = {}
    by_key = {(row["dataset"], row["model"]): row for row in table}
    if config.experiment.assert_beats_mostpop:
        for dataset in config.experiment.datasets:
            diffrec, popular = by_key.get((dataset, "diffrec")), by_key.get((dataset, "mostpop"))
            if diffrec and popular:
                checks[f"diffrec_beats_mostpop_recall@20_{dataset}"] = bool(
                    diffrec["recall@20"] > popular["recall@20"]
                )

    # clean vs noisy: relative change of Recall@20 when the training data is noisy
    robustness = []
    for model in config.experiment.models:
        clean, noisy = by_key.get(("ml-1m_clean", model)), by_key.get(("ml-1m_noisy", model))
        if clean and noisy:
            robustness.append(
                {
                    "model": model,
                    "clean recall@20": clean["recall@20"],
                    "noisy recall@20": noisy["recall@20"],
                    "change": noisy["recall@20"] / clean["recall@20"] - 1.0,
                }
            )
    passed = all(checks.values()) if checks else True
    return {
        "passed": passed,
        "checks": checks,
        "table": table,
        "robustness": robustness,
        "scale": config.scale,
    }


def plot_sweeps(sweeps: dict[str, list[dict]], folder: Path, dataset: str) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    for name, points in sweeps.items():
        if not points:
            continue
        figure, axis = plt.subplots(figsize=(4.5, 3.2))
        values = [p["value"] for p in points]
        for metric in ("recall@20", "ndcg@20"):
            axis.plot(values, [p[metric] for p in points], marker="o", label=metric)
        axis.set_xscale("log" if name == "noise_scale" else "linear")
        axis.set_xlabel("diffusion steps T" if name == "steps" else "noise scale s")
        axis.set_ylabel("test metric")
        axis.set_title(f"DiffRec on {dataset}")
        axis.legend()
        figure.tight_layout()
        path = folder / f"sweep_{name}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        files[name] = path.name
    return files


def render(summary: dict, sweeps: dict, plots: dict[str, str], config: Config) -> str:
    scale = config.scale
    lines = [f"# Diffusion recommenders (DiffRec family) — {scale} scale", ""]
    if scale == "smoke":
        lines += [
            "Smoke scale: a few epochs, one seed; the numbers check the direction of the "
            "effect, not the paper's values.",
            "",
        ]
    lines += [f"Checks: {summary['checks']} → passed = {summary['passed']}", ""]

    # main table, ours (bounded Recall) and the released code's Recall beside the targets
    rows = []
    for row in summary["table"]:
        target = TARGETS.get((row["model"], row["dataset"]), {})
        entry = {
            "dataset": row["dataset"],
            "model": DISPLAY[row["model"]],
            "seeds": row["seeds"],
            # closed-form and count models (EASE, most-popular) train no epochs
            "epochs": f"{row['epochs']:g}" if row["epochs"] else "—",
        }
        for metric in METRICS:
            entry[metric] = _cell(row, metric)
        for metric in ("recall_rel@10", "recall_rel@20"):
            entry[metric.replace("recall_rel", "R|R|")] = _cell(row, metric)
        entry["target (released code)"] = (
            ", ".join(f"{k.replace('recall_rel', 'R|R|')} {v}" for k, v in target.items()) or "—"
        )
        entry["fit s"] = f"{row['seconds_fit']:.0f}"
        rows.append(entry)
    lines += [
        "## Test metrics (mean ± std over seeds)",
        "",
        "`recall@K` divides hits by min(K, |R|); `R|R|@K` divides by |R| as the released "
        "code does (its targets use that). NDCG is the same under both.",
        "",
        markdown_table(rows),
        "",
    ]

    if summary["robustness"]:
        lines += [
            "## Clean vs noisy training data (Recall@20)",
            "",
            "DiffRec's claim: diffusion denoising keeps accuracy when the training "
            "interactions contain noise (ML-1M noisy adds random interactions).",
            "",
            markdown_table(summary["robustness"]),
            "",
        ]
    if summary.get("sequential"):
        rows = [
            {
                "model": row["model"],
                "seeds": row["seeds"],
                **{metric: _cell(row, metric) for metric in METRICS},
            }
            for row in summary["sequential"]
        ]
        lines += [
            "## Sequential: DreamRec vs SASRec, and diffusion augmentation (ML-100K)",
            "",
            "Leave-last-out by time, all 1,682 items ranked, history items masked; one "
            "held-out item per user, so recall@K is the hit rate. "
            "`sasrec+dreamrec-augmentation`: SASRec trained on sequences where users "
            "with few ratings get items generated by the trained DreamRec appended.",
            "",
            markdown_table(rows),
            "",
        ]
    if summary.get("content"):
        content = summary["content"]
        size = content.get("image_size", 32)
        lines += [
            "## Content presentation: preference-conditioned item images",
            "",
            "No dataset here pairs users with item images: preferences are one-hot "
            "category vectors over CIFAR-10 (real images as stand-in items), generated at "
            f"{size}x{size}. Judge: a linear probe on pretrained EfficientNet-Lite0 "
            "features, fitted on the real test images at the same resolution; its accuracy "
            "on real training images is the ceiling for alignment. Alignment = share of "
            "generated images the judge assigns to the preferred category (chance 0.1); "
            "`alignment_unconditional` samples the same noise with the null preference. "
            "This shows conditional generation toward a preference, not personalisation "
            "of real users.",
            "",
            markdown_table(
                [
                    {
                        k: content[k]
                        for k in (
                            "train_images",
                            "epochs",
                            "judge_accuracy_real",
                            "alignment_generated",
                            "alignment_unconditional",
                            "chance",
                        )
                        if k in content
                    }
                ]
            ),
            "",
        ]
        if "alignment_per_class" in content:
            real = content.get("judge_accuracy_real_per_class", {})
            rows = [
                {"category": name, "alignment": value, "judge_on_real": real.get(name)}
                for name, value in content["alignment_per_class"].items()
            ]
            lines += [markdown_table(rows), ""]
        lines += [f"![generated]({content['grid']})", ""]
    if plots:
        lines += ["## Sweeps (DiffRec, test metrics)", ""]
        for name, file in plots.items():
            lines += [f"![{name}]({file})", ""]
        for name, points in sweeps.items():
            rows = [
                {"value": p["value"], "recall@20": p["recall@20"], "ndcg@20": p["ndcg@20"]}
                for p in points
            ]
            lines += [f"### {name}", "", markdown_table(rows), ""]
    return "\n".join(lines)


def _cell(row: dict, metric: str) -> str:
    std = row.get(f"{metric}_std", 0.0)
    if row["seeds"] > 1 and not math.isnan(std):
        return f"{row[metric]:.4f} ± {std:.4f}"
    return f"{row[metric]:.4f}"


__all__ = ["DIFFUSION_MODELS", "reproduce", "run_config", "summarise"]
