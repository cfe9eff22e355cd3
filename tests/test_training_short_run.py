"""End to end: a 20-iteration run of a small PAA-R18 on a few generated images lowers the loss
and yields finite, non-empty detections (real data layer, detector, assigner, loss, post-processing).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ladet.config.schema import Config
from ladet.data import build_dataset
from ladet.data.builtin import make_builtin_dataset
from ladet.data.collate import collate
from ladet.methods import build_method


def test_twenty_iterations_lower_the_loss_and_give_detections(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    make_builtin_dataset(tmp_path, seed=3, num_train=4, num_val=2, image_size=(128, 128))
    config = Config()
    config.data.train.ann_file = str(tmp_path / "annotations/train.json")
    config.data.train.image_dir = str(tmp_path / "train")
    config.data.max_size, config.data.short_size, config.data.flip_prob = 128, 128, 0.0
    config.model.num_classes = 12
    config.model.backbone.depth = 18
    config.model.backbone.weights = None
    config.model.backbone.frozen_stages = -1
    config.model.backbone.norm_eval = False
    config.model.neck.out_channels = 64
    config.model.head.feat_channels = 64
    config.model.head.num_convs = 2
    config.model.anchors.octave_base_scale = 4.0
    config.model.test.score_threshold = 0.01

    dataset = build_dataset(config, "train")
    batch = collate([dataset[index] for index in range(len(dataset))])
    assert sum(len(boxes) for boxes in batch.gt_boxes) > 0
    method = build_method(config, torch.device("cpu"))
    method.train()
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    totals = []
    for _ in range(20):
        losses = method(batch)
        total = sum(value for key, value in losses.items() if key.startswith("loss_"))
        assert torch.isfinite(total), losses
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))

    assert sum(totals[-5:]) / 5 < 0.8 * sum(totals[:5]) / 5, totals
    detector = method.evaluation_detector().eval()
    detections = detector.predict(batch)
    assert sum(len(d.boxes) for d in detections) > 0
    for image_detections in detections:
        assert torch.isfinite(image_detections.boxes).all()
        assert torch.isfinite(image_detections.scores).all()
