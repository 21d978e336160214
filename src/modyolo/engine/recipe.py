"""Staged training from a recipe file: the freeze-then-unfreeze strategy as one command.

``modyolo train --recipe stages.yaml``::

    data: my.yaml            # options shared by every stage (any `modyolo train` option)
    cfg: yolov5s-resnet18.yaml
    imgsz: 320
    stages:
      - {name: head-only, epochs: 10, freeze: "0-9", fraction: 0.5}
      - {name: all-half,  epochs: 10, freeze: "",    fraction: 0.5, lr_scale: 0.5}
      - {name: all-full,  epochs: 20, freeze: "",    lr_scale: 0.1}

Each stage starts from the previous stage's ``best.pt`` (its weights, not its optimizer state)
and writes its own run folder under ``<project>/<name>/<stage name>``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modyolo.engine.config import TrainConfig
from modyolo.engine.evaluator import Evaluator
from modyolo.engine.freeze import parse_freeze
from modyolo.yaml_io import read_yaml

LOGGER = logging.getLogger("modyolo.train")


def load_recipe(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} not found")
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data["stages"]:
        raise ValueError(f"{path}: a recipe needs a non-empty 'stages' list (see modyolo/engine/recipe.py)")
    shared = {k: v for k, v in data.items() if k != "stages"}
    stages = []
    for i, stage in enumerate(data["stages"]):
        if not isinstance(stage, dict) or "epochs" not in stage:
            raise ValueError(f"{path}: stage {i} must be a mapping with at least 'epochs', got {stage!r}")
        stages.append(stage)
    return shared, stages


def run_recipe(path: str | Path, base: TrainConfig, evaluator: Evaluator | None = None) -> list[Any]:
    """Train every stage in order; returns their TrainResults. ``evaluator``: see ``engine/evaluator.py``
    (``modyolo train --recipe`` passes ``eval.validator.validate``)."""
    from modyolo.engine.trainer import Trainer

    shared, stages = load_recipe(path)
    results = []
    previous_best: Path | None = None
    project = Path(base.project) / base.name
    for i, stage in enumerate(stages):
        stage = dict(stage)
        name = str(stage.pop("name", f"stage{i + 1}"))
        if "freeze" in stage:
            stage["freeze"] = parse_freeze(stage["freeze"]) if stage["freeze"] not in ("", None) else []
        values = {**base.to_dict(), **shared, **stage, "project": str(project), "name": name, "exist_ok": True}
        if previous_best is not None:
            values["weights"] = str(previous_best)
        config = TrainConfig.from_dict(values, f"{path} stage {i} ({name})")
        LOGGER.info(
            "recipe stage %d/%d '%s': %d epochs, freeze %s, fraction %s, lr x%s",
            i + 1,
            len(stages),
            name,
            config.epochs,
            config.freeze or "none",
            config.fraction,
            config.lr_scale,
        )
        result = Trainer(config, evaluator=evaluator).fit()
        results.append(result)
        previous_best = result.best if result.best and result.best.exists() else result.last
    return results
