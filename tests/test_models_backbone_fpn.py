"""ResNet backbone (frozen stages, BN eval, local weights) and FPN (docs/algorithms.md §1.1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ladet.models.backbone import ResNetBackbone
from ladet.models.fpn import FPN


def test_backbone_outputs_and_channels() -> None:
    backbone = ResNetBackbone(18, weights=None)
    assert backbone.out_channels == [128, 256, 512]
    features = backbone(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [(1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)]
    assert ResNetBackbone(50, weights=None).out_channels == [512, 1024, 2048]


def test_frozen_stages_and_norm_eval_after_train() -> None:
    backbone = ResNetBackbone(18, weights=None, frozen_stages=1, norm_eval=True)
    backbone.train()
    for name, parameter in backbone.named_parameters():
        frozen = name.startswith(("conv1.", "bn1.", "layer1."))
        assert parameter.requires_grad != frozen, name
    batch_norms = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and all(not m.training for m in batch_norms)
    # BN affine of layer2-4 trainable, ordinary BatchNorm2d (not FrozenBatchNorm2d)
    assert type(backbone.layer2[0].bn1) is nn.BatchNorm2d and backbone.layer2[0].bn1.weight.requires_grad
    # running statistics never change in train mode
    before = backbone.layer3[0].bn1.running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64))
    assert torch.equal(backbone.layer3[0].bn1.running_mean, before)
    # convs of the unfrozen stages stay in train mode
    assert backbone.layer2.training and not backbone.layer1.training


def test_norm_eval_false_updates_statistics() -> None:
    backbone = ResNetBackbone(18, weights=None, frozen_stages=-1, norm_eval=False).train()
    assert all(p.requires_grad for p in backbone.parameters())
    before = backbone.layer3[0].bn1.running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64))
    assert not torch.equal(backbone.layer3[0].bn1.running_mean, before)


def test_local_weights_file_is_loaded_and_fc_ignored(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)  # includes fc.weight / fc.bias
    backbone = ResNetBackbone(18, weights=str(path))
    assert torch.equal(backbone.conv1.weight, reference.conv1.weight)
    assert torch.equal(backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_local_weights_mismatch_lists_keys(tmp_path: Path) -> None:
    state = torchvision.models.resnet18(weights=None).state_dict()
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight.*extra\.weight"):
        ResNetBackbone(18, weights=str(path))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        ResNetBackbone(18, weights=str(tmp_path / "missing.pth"))


def test_unknown_weights_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="NOT_A_WEIGHT"):
        ResNetBackbone(18, weights="NOT_A_WEIGHT")


def test_fpn_output_sizes_for_800x1344() -> None:
    fpn = FPN([4, 8, 16], out_channels=8, num_outs=5)
    features = [torch.randn(1, 4, 100, 168), torch.randn(1, 8, 50, 84), torch.randn(1, 16, 25, 42)]
    sizes = [tuple(p.shape[-2:]) for p in fpn(features)]
    assert sizes == [(100, 168), (50, 84), (25, 42), (13, 21), (7, 11)]


def test_fpn_init_xavier_zero_bias() -> None:
    fpn = FPN([4, 8, 16], out_channels=8)
    convs = [m for m in fpn.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 + 3 + 2
    assert all(torch.count_nonzero(conv.bias) == 0 for conv in convs)
    # Xavier-uniform bound sqrt(6 / (fan_in + fan_out)) for the 3x3 extra convs: 8*9 in, 8*9 out
    bound = (6.0 / (8 * 9 + 8 * 9)) ** 0.5
    assert float(fpn.extra_convs[0].weight.detach().abs().max()) <= bound


def test_fpn_p6_on_p5_output_and_p7_on_p6_without_relu() -> None:
    torch.manual_seed(0)
    fpn = FPN([4, 8, 16], out_channels=8)
    features = [torch.randn(2, 4, 16, 20), torch.randn(2, 8, 8, 10), torch.randn(2, 16, 4, 5)]
    p3, p4, p5, p6, p7 = fpn(features)
    expected_p6 = F.conv2d(p5, fpn.extra_convs[0].weight, fpn.extra_convs[0].bias, stride=2, padding=1)
    assert torch.allclose(p6, expected_p6, atol=1e-6)
    assert bool((p6 < 0).any())  # negative values reach P7 untouched (no ReLU)
    expected_p7 = F.conv2d(p6, fpn.extra_convs[1].weight, fpn.extra_convs[1].bias, stride=2, padding=1)
    assert torch.allclose(p7, expected_p7, atol=1e-6)
    assert not torch.allclose(
        p7, F.conv2d(p6.relu(), fpn.extra_convs[1].weight, fpn.extra_convs[1].bias, 2, 1)
    )


def test_fpn_top_down_nearest_to_exact_size_hand_case() -> None:
    fpn = FPN([1, 1, 1], out_channels=1, num_outs=3)
    with torch.no_grad():
        for conv in fpn.lateral_convs:
            conv.weight.fill_(1.0)
        for conv in fpn.output_convs:  # identity 3x3
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
    c5 = torch.tensor([[[[1.0, 2.0]]]])  # 1 x 2
    c4 = torch.zeros(1, 1, 2, 3)  # odd size: nearest upsample of 1x2 to 2x3
    c3 = torch.full((1, 1, 3, 5), 10.0)
    p3, p4, p5 = fpn([c3, c4, c5])
    assert torch.equal(p5, c5)
    assert torch.equal(p4, torch.tensor([[[[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]]]]))
    # p3 = 10 + nearest(p4 lateral sum) to 3x5: rows 0,0,1 -> cols floor(j*3/5) = 0,0,1,1,2
    expected_p3 = 10.0 + torch.tensor([[1.0, 1.0, 1.0, 1.0, 2.0]]).expand(3, 5)
    assert torch.equal(p3[0, 0], expected_p3)


def test_weights_enum_name_resolves_through_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The enum branch, with torchvision's download replaced by a state dict made here."""
    reference = torchvision.models.resnet18(weights=None)
    requested = []

    def fake_get_state_dict(self, *args, **kwargs):
        requested.append(self)
        return reference.state_dict()

    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", fake_get_state_dict)
    backbone = ResNetBackbone(18, weights="IMAGENET1K_V1")
    assert requested == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1]
    assert torch.equal(backbone.layer2[0].conv1.weight, reference.layer2[0].conv1.weight)
    ResNetBackbone(18, weights="ResNet18_Weights.IMAGENET1K_V1")
    assert len(requested) == 2
    with pytest.raises(ValueError, match="not ResNet-18 weights"):
        ResNetBackbone(18, weights="ResNet50_Weights.IMAGENET1K_V1")


def test_fresh_backbone_keeps_batchnorm_statistics_with_norm_eval() -> None:
    """norm_eval applies from construction, before any train()/eval() call."""
    import torch

    from ladet.models.backbone import ResNetBackbone

    backbone = ResNetBackbone(depth=18, weights=None, frozen_stages=1, norm_eval=True)
    before = backbone.layer3[0].bn1.running_mean.clone()
    backbone(torch.randn(1, 3, 64, 64))
    assert torch.equal(before, backbone.layer3[0].bn1.running_mean)
