"""Learning-rate scaling, warm-up and step decay against hand-computed values (docs/algorithms.md §1.9)."""

import pytest
import torch

from ladet.config.schema import TrainConfig
from ladet.engine.schedule import StepSchedule, build_optimizer, scaled_learning_rate


def test_scaled_learning_rate_is_linear_in_total_batch() -> None:
    config = TrainConfig(lr=0.01, base_batch_size=16)
    assert scaled_learning_rate(config, 16) == pytest.approx(0.01)
    assert scaled_learning_rate(config, 2) == pytest.approx(0.00125)
    assert scaled_learning_rate(config, 32) == pytest.approx(0.02)
    config.scale_lr = False
    assert scaled_learning_rate(config, 2) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="total batch size"):
        scaled_learning_rate(config, 0)


def test_warmup_and_step_decay_match_hand_computed_values() -> None:
    schedule = StepSchedule.from_config(TrainConfig(lr_steps=[8, 11]), base_lr=0.01)
    # lr_i = lr * (1 - (1 - i/500) * 0.999)
    assert schedule.learning_rate(0, 0) == pytest.approx(0.01 * 0.001)
    assert schedule.learning_rate(0, 250) == pytest.approx(0.01 * (1 - 0.5 * 0.999))
    assert schedule.learning_rate(0, 499) == pytest.approx(0.01 * (1 - 0.002 * 0.999))
    assert schedule.learning_rate(0, 500) == pytest.approx(0.01)
    assert schedule.learning_rate(7, 10_000) == pytest.approx(0.01)
    assert schedule.learning_rate(8, 10_000) == pytest.approx(0.001)  # decay applies from epoch 8 on
    assert schedule.learning_rate(10, 10_000) == pytest.approx(0.001)
    assert schedule.learning_rate(11, 10_000) == pytest.approx(0.0001)
    # warm-up and decay multiply (tiny runs may decay during warm-up)
    assert schedule.learning_rate(8, 250) == pytest.approx(0.001 * (1 - 0.5 * 0.999))


def test_optimizer_is_sgd_over_trainable_parameters_only() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    module[0].requires_grad_(False)
    optimizer = build_optimizer(list(module.parameters()), TrainConfig(), base_lr=0.5)
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert len(group["params"]) == 2
    assert group["momentum"] == 0.9 and group["weight_decay"] == 1e-4
    schedule = StepSchedule(base_lr=0.5, warmup_iters=0, warmup_ratio=0.001, steps=(1,), gamma=0.1)
    assert schedule.apply(optimizer, 1, 0) == pytest.approx(0.05)
    assert group["lr"] == pytest.approx(0.05)
    module.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(list(module.parameters()), TrainConfig(), base_lr=0.5)


def test_optimizer_choice_builds_sgd_or_adamw_and_validation_refuses_others() -> None:
    import pytest
    import torch

    from ladet.config import ConfigError, load_config
    from ladet.config.schema import TrainConfig
    from ladet.engine.schedule import build_optimizer

    parameters = [torch.nn.Parameter(torch.zeros(3))]
    assert isinstance(build_optimizer(parameters, TrainConfig(), 0.01), torch.optim.SGD)
    adamw = build_optimizer(parameters, TrainConfig(optimizer="adamw", weight_decay=0.05), 0.001)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.05
    with pytest.raises(ConfigError, match="train.optimizer"):
        load_config("configs/paa/paa_r50_fpn_1x_coco.yaml", ["train.optimizer=adam"])
