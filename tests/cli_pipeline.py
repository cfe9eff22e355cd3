"""Shared set-up of the real-pipeline tests: a tiny built-in dataset and a tiny PAA-R18 config."""

from __future__ import annotations

from pathlib import Path

import torch

from ladet.cli import main

REPOSITORY = Path(__file__).resolve().parents[1]


def write_tiny_config(root: Path, data_dir: Path, **extra: str) -> Path:
    """A PAA-R18 config on 96-128 px images: 4 train / 2 val images, 2 epochs of 2 iterations."""
    config = root / "tiny.yaml"
    config.write_text(
        f"""_base_: {REPOSITORY / "configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml"}
model:
  head: {{num_convs: 1}}
data:
  train: {{ann_file: {data_dir / "annotations/train.json"}, image_dir: {data_dir / "train"}}}
  val: {{ann_file: {data_dir / "annotations/val.json"}, image_dir: {data_dir / "val"}}}
  images_per_gpu: 2
  workers_per_gpu: 0
  test_images_per_gpu: 2
  max_size: 128
  short_size: 96
train:
  optimizer: sgd   # the paper's optimiser and linear lr scaling (the demo base uses AdamW)
  lr: 0.01
  scale_lr: true
  weight_decay: 0.0001
  epochs: 2
  lr_steps: [1]
  warmup_iters: 2
  eval_interval: 1
  checkpoint_interval: 1
  log_interval: 1
""",
        encoding="utf-8",
    )
    return config


_CACHE: dict[str, tuple[Path, Path, Path]] = {}


def make_tiny_pipeline(root: Path) -> tuple[Path, Path, Path]:
    """Generates the data, trains 2 deterministic epochs; returns (config, data dir, work dir).

    Done once per test session (later calls return the first result; tests must not modify it).
    """
    torch.set_num_threads(1)
    if "pipeline" in _CACHE and all(path.exists() for path in _CACHE["pipeline"]):
        return _CACHE["pipeline"]
    data_dir = root / "data"
    assert (
        main(
            [
                "make-dataset",
                "--out",
                str(data_dir),
                "--num-train",
                "4",
                "--num-val",
                "2",
                "--min-side",
                "96",
                "--max-side",
                "128",
            ]
        )
        == 0
    )
    config = write_tiny_config(root, data_dir)
    work_dir = root / "run"
    assert main(["train", str(config), "--work-dir", str(work_dir), "--deterministic"]) == 0
    _CACHE["pipeline"] = (config, data_dir, work_dir)
    return _CACHE["pipeline"]
