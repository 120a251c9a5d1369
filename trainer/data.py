"""A run's data: the configured datasets as EditTasks, validated before any actor starts."""

from __future__ import annotations

from pathlib import Path

from motionnft.data.formats import load_dataset
from motionnft.data.records import Preprocess
from motionnft.data.validation import require_valid
from trainer.config import TrainConfig
from workers.tasks import EditTask


def load_tasks(config: TrainConfig) -> tuple[list[EditTask], list[EditTask]]:
    """Train and eval tasks, validated up front (a bad row fails the run now, not mid-epoch)."""
    preprocess = Preprocess(size=config.data.size, center_crop=config.data.center_crop)
    out = []
    for path in (config.data.train_path, config.data.eval_path):
        if path is None:
            raise ValueError("data.train_path and data.eval_path must name datasets (see `motionnft data synth`)")
        records = load_dataset(Path(path))
        require_valid(records)
        samples = [r.load(preprocess) for r in records]
        out.append([EditTask(s.id, s.prompt, s.input_image, s.target_image, s.category) for s in samples])
    return out[0], out[1]
