"""``train.sync_bn``: SyncBatchNorm exactly for CUDA runs on several processes that train BatchNorm."""

from __future__ import annotations

import pytest
import torch
from methods_support import tiny_model_config
from torch import nn

from ladet.config.loader import config_from_dict, config_to_dict
from ladet.config.schema import Config
from ladet.engine.distributed import DistributedContext, trains_batchnorm, use_sync_batchnorm
from ladet.engine.trainer import wrap_for_training
from ladet.models.detector import build_detector

CUDA_PAIR = DistributedContext(rank=0, world_size=2, device=torch.device("cuda", 0))


def _detector(norm_eval: bool) -> nn.Module:
    config = tiny_model_config()
    config.backbone.norm_eval = norm_eval
    return build_detector(config)


def test_trains_batchnorm_follows_norm_eval_and_keeps_the_mode() -> None:
    frozen, trained = _detector(norm_eval=True), _detector(norm_eval=False)
    frozen.eval()
    assert not trains_batchnorm(frozen) and not frozen.training
    assert trains_batchnorm(trained) and trained.training


@pytest.mark.parametrize(
    ("sync_bn", "trained", "context", "expected"),
    [
        (True, True, CUDA_PAIR, True),
        (False, True, CUDA_PAIR, False),  # switched off by the key
        (True, False, CUDA_PAIR, False),  # norm_eval: frozen statistics, nothing to synchronise
        (True, True, DistributedContext(rank=0, world_size=1, device=torch.device("cuda", 0)), False),
        (True, True, DistributedContext(rank=0, world_size=2, device=torch.device("cpu")), False),
    ],
)
def test_decision_table(sync_bn: bool, trained: bool, context: DistributedContext, expected: bool) -> None:
    assert use_sync_batchnorm(sync_bn, trained, context) is expected


def test_key_defaults_on_and_round_trips() -> None:
    assert Config().train.sync_bn is True
    data = config_to_dict(Config())
    data["train"]["sync_bn"] = False
    assert config_from_dict(data).train.sync_bn is False


def test_single_process_is_left_unwrapped() -> None:
    detector = _detector(norm_eval=False)
    assert wrap_for_training(detector, Config(), DistributedContext()) is detector
