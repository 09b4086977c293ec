"""`tico train | evaluate | reproduce | bench --config <yaml> [key.sub=value ...] [--resume]`."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

from shared.commands import command_parser, load_command_config, run_command, setup_logging
from tico.config import TiCoConfig

log = logging.getLogger("tico")

COMMANDS = {
    "train": "pre-train an encoder with TiCo or Barlow Twins, then evaluate it",
    "evaluate": "kNN, linear and semi-supervised accuracy of a checkpoint (checkpoint=PATH)",
    "reproduce": "the paper's experiments at the config's scale, with results.md and plots",
    "bench": "steps/s and kNN accuracy against lightly's TiCoLoss, images/s of a full step",
}


def _main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "tico", "TiCo: transformation invariance and covariance contrast", COMMANDS
    )
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    # `evaluate` takes the checkpoint as a plain key=value beside the config overrides
    checkpoint = None
    overrides = []
    for item in args.overrides:
        if item.startswith("checkpoint="):
            checkpoint = item.split("=", 1)[1]
        else:
            overrides.append(item)
    args.overrides = overrides
    if args.command == "bench" and args.config is None:
        from tico.bench import default_config_path

        args.config = str(default_config_path())
    config = load_command_config(TiCoConfig, args)
    _route_lightning_logs_through_ours()

    if args.command == "train":
        from tico.training import train

        results = train(config, resume=args.resume)
        if results:
            print(f"kNN {results['knn_acc']:.4f}  linear {results['linear_acc']:.4f}")
    elif args.command == "evaluate":
        from tico.training import evaluate_checkpoint

        if checkpoint is None:
            sys.exit(
                "error: evaluate needs checkpoint=PATH (a .ckpt from runs/tico/<run>/checkpoints)"
            )
        results = evaluate_checkpoint(config, checkpoint)
        print(json.dumps({k: v for k, v in results.items() if "eigenvalues" not in k}, indent=2))
    elif args.command == "reproduce":
        from tico.experiment import reproduce

        results = reproduce(config, resume=True)
        print(f"passed: {results['passed']}  report: {results['report']}")
        if not results["passed"]:
            return 1  # the paper's effect did not show: a failed check fails the command
    else:
        from tico.bench import bench

        report = bench(config)
        print(report)
    return 0


def _route_lightning_logs_through_ours() -> None:
    """Lightning adds its own stderr handler; drop it so each message is shown once."""
    import lightning  # noqa: F401  (importing it installs the handler)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def _main_with_clear_errors(argv: Sequence[str] | None = None) -> int:
    """Bad input met after the config loaded (a checkpoint that does not fit, a missing image
    folder, NaN embeddings, a batch larger than the data) ends with its one-line reason."""
    try:
        return _main(argv)
    except (ValueError, FileNotFoundError) as error:
        log.debug("stopped by bad input", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_main_with_clear_errors, argv)


if __name__ == "__main__":
    sys.exit(main())
