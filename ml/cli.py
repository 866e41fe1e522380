"""`clearhouse ml ...`: retrain the payments model, evaluate/train on PaySim-layout data,
promote, roll back, list.

Heavy imports (scikit-learn, polars) happen inside the commands, so `clearhouse --help` and the
other commands stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _events(path: str):
    from ml.paysim import PaySimError, load_paysim

    if not Path(path).is_file():
        sys.exit(f"clearhouse ml: {path}: no such file")
    try:
        return load_paysim(path)
    except PaySimError as exc:
        sys.exit(f"clearhouse ml: {exc}")


def _registry(family: str = "payments"):
    from ml.registry import Registry

    return Registry(family=family)


def cmd_evaluate(args) -> None:
    from ml.train import evaluate

    try:
        result = evaluate(_events(args.paysim), args.holdout_fraction)
    except ValueError as exc:
        sys.exit(f"clearhouse ml evaluate: {exc}")
    print(json.dumps(result, indent=2))


def cmd_train(args) -> None:
    from ml.train import train_candidate

    try:
        model, fields = train_candidate(_events(args.paysim), args.holdout_fraction)
    except ValueError as exc:
        sys.exit(f"clearhouse ml train: {exc}")
    from ml.registry import file_sha256

    data = Path(args.paysim).resolve()
    fields["data"] = {"file": str(data), "sha256": file_sha256(data)}
    version = _registry("paysim").register(model, fields)
    print(json.dumps({"version": version, "window": fields["window"],
                      "metrics": fields["metrics"]}))


def cmd_retrain(args) -> None:
    """The fraud_training Dagster job in process, so the run and its model card show in
    `make dev`."""
    from orchestration.run import run_fraud_training
    from warehouse.settings import get_settings

    try:
        meta = run_fraud_training(get_settings(), known_at=args.known_at,
                                  promote=not args.no_promote)
    except RuntimeError as exc:
        sys.exit(f"clearhouse ml retrain: {exc}")
    print(json.dumps({k: meta[k] for k in ("version", "promoted", "decision", "champion",
                                           "pr_auc", "recall_at_1pct_fpr", "precision_at_100",
                                           "training_rows", "frauds_known")}))


def cmd_promote(args) -> None:
    from ml.registry import RegistryError

    try:
        print(json.dumps(_registry(args.family).promote(args.version, force=args.force)))
    except RegistryError as exc:
        sys.exit(f"clearhouse ml promote: refused: {exc}")


def cmd_rollback(args) -> None:
    from ml.registry import RegistryError

    try:
        print(json.dumps(_registry(args.family).rollback()))
    except RegistryError as exc:
        sys.exit(f"clearhouse ml rollback: {exc}")


def cmd_models(args) -> None:
    registry = _registry(args.family)
    champion = registry.champion()
    for name in registry.versions():
        card = registry.card(name)
        print(json.dumps({"version": name, "champion": name == champion,
                          "created_at": card["created_at"], "window": card["window"],
                          "metrics": card["metrics"],
                          "champion_on_same_holdout": card.get("compared", {})}))


def add_parser(sub) -> None:
    """Register `clearhouse ml` on the top-level subparsers."""
    ml = sub.add_parser("ml", help="fraud models: evaluate, train, promote, roll back")
    cmds = ml.add_subparsers(dest="ml_cmd", required=True)
    for name, func, text in (
            ("evaluate", cmd_evaluate, "print holdout metrics of both models on a PaySim-layout "
             "file (time-based split)"),
            ("train", cmd_train, "train on a PaySim-layout file and register a version")):
        cmd = cmds.add_parser(name, help=text)
        cmd.add_argument("--paysim", required=True, metavar="FILE",
                         help="CSV in the PaySim column layout (see ml/paysim.py)")
        cmd.add_argument("--holdout-fraction", type=_fraction, default=0.3,
                         help="the latest share of events held out (default 0.3)")
        cmd.set_defaults(func=func)
    retrain = cmds.add_parser("retrain", help="train the payments model on the warehouse's "
                              "payments and history archives with the fraud reports known at "
                              "--known-at (default now); promote it if it beats the champion")
    retrain.add_argument("--known-at", metavar="DAY|TIMESTAMP", default=None,
                         help="the training cut-off, UTC (default: now)")
    retrain.add_argument("--no-promote", action="store_true",
                         help="register only; promote later with `clearhouse ml promote`")
    retrain.set_defaults(func=cmd_retrain)
    promote = cmds.add_parser("promote", help="make VERSION the champion if it beats the current "
                              "one by CLEARHOUSE_ML_PROMOTION_MARGIN on the same holdout")
    promote.add_argument("version")
    promote.add_argument("--force", action="store_true", help="skip the comparison (audited)")
    promote.set_defaults(func=cmd_promote)
    rollback = cmds.add_parser("rollback", help="make the previous champion the champion again")
    rollback.set_defaults(func=cmd_rollback)
    models = cmds.add_parser("models", help="list versions with their metrics (one JSON line "
                             "each)")
    models.set_defaults(func=cmd_models)
    for cmd in (promote, rollback, models):
        cmd.add_argument("--family", choices=("payments", "paysim"), default="payments",
                         help="payments: the model the live API serves (default); paysim: "
                         "models trained with `train --paysim`")


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return number
