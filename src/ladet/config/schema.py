"""The typed configuration schema. Every key a YAML config may hold is a field here.

Defaults reproduce the PAA-R50 1x COCO setting of docs/algorithms.md §1; experiment files only state
what differs. The loader (``ladet.config.loader``) merges ``_base_`` files and dotted overrides
into these dataclasses and refuses unknown keys and wrong types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# ------------------------------------------------------------------------------ choice fields
# The one list of allowed values of each choice field. The loader checks a value's type, the
# validation (``ladet.config.validation``) its membership, and the builders (methods, heads,
# backbones, losses) key their tables by these types; ``choices(X)`` gives the values.
MethodName = Literal["baseline", "lad", "kd", "solad", "colad"]
HeadType = Literal["paa", "iop", "cop"]
BackboneDepth = Literal[18, 34, 50, 101]
BoxLossWeighting = Literal["iou", "mean"]
EvaluateNetwork = Literal["first", "second"]
CoLADCriterion = Literal["std_mean"]
OptimizerName = Literal["sgd", "adamw"]
DataFormat = Literal["coco", "voc", "yolo"]
# train.amp (src/ladet/engine/precision.py): fp32, float16 (``true``, as older configs write it), bfloat16
AmpPolicy = Literal[False, True, "float16", "bfloat16"]


def choices(choice_type: Any) -> tuple[Any, ...]:
    """The allowed values of a choice type, in declaration order: ``choices(HeadType)`` -> ("paa", "iop", "cop")."""
    return get_args(choice_type)


# --------------------------------------------------------------------------------------- model
@dataclass
class BackboneConfig:
    depth: BackboneDepth = 50  # torchvision ResNet depth
    # ImageNet init: a torchvision weights enum name ("IMAGENET1K_V1"), a local path to a
    # torchvision-layout state dict, or null for random init (tests, built-in dataset).
    weights: str | None = "IMAGENET1K_V1"
    frozen_stages: int = 1  # stem + layer1 get requires_grad=False
    norm_eval: bool = True  # BatchNorm always in eval mode (affine of layer2-4 stays trainable)


@dataclass
class NeckConfig:
    out_channels: int = 256
    num_outs: int = 5  # P3..P7


@dataclass
class HeadConfig:
    # "paa": logits + IoU branch; "iop": implicit objectness (§6.2); "cop": conditional
    # objectness (§6.3). With iou_branch false these are the *base heads of Appendix Table 1.
    type: HeadType = "paa"
    iou_branch: bool = True
    num_convs: int = 4
    feat_channels: int = 256
    prior_prob: float = 0.01


@dataclass
class AnchorConfig:
    strides: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128])
    octave_base_scale: float = 8.0  # anchor side = octave_base_scale * stride


@dataclass
class AssignerConfig:
    pre_assign_iou_threshold: float = 0.1  # MaxIoU pos = neg threshold (§1.5 A)
    topk: int = 9  # candidates per (GT, level)
    cost_box_weight: float = 1.3  # weight of (1 - GIoU) inside the anchor cost (§1.5 B)
    gmm_max_iterations: int = 100
    gmm_tolerance: float = 1e-3
    gmm_reg_covar: float = 1e-6


@dataclass
class LossConfig:
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    cls_weight: float = 1.0
    box_weight: float = 1.3
    iou_weight: float = 0.5
    # "iou": PAA baseline, box loss weighted by IoU(pred, gt) (§1.6);
    # "mean": plain mean over positives (LAD students §2.1, *base heads §6).
    box_loss_weighting: BoxLossWeighting = "iou"


@dataclass
class TestConfig:
    nms_pre: int = 1000
    score_threshold: float = 0.05
    nms_iou_threshold: float = 0.6
    max_per_image: int = 100
    score_voting: bool = True
    score_voting_sigma: float = 0.025


@dataclass
class ModelConfig:
    # number of object classes; null = taken from the dataset's categories (ladet.data.classes)
    num_classes: int | None = None
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    assigner: AssignerConfig = field(default_factory=AssignerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    test: TestConfig = field(default_factory=TestConfig)


# ---------------------------------------------------------------------------------------- data
@dataclass
class DatasetConfig:
    # coco: the annotation JSON; voc: ImageSets/Main/<split>.txt; yolo: the label folder
    # (default: image_dir with its last "images" component replaced by "labels")
    ann_file: str = ""
    image_dir: str = ""  # coco: folder of the file_name entries; voc: JPEGImages; yolo: images/<split>
    annotation_dir: str = ""  # voc only: the XML folder (default: <ann_file>/../../../Annotations)


@dataclass
class DataConfig:
    train: DatasetConfig = field(
        default_factory=lambda: DatasetConfig(
            "data/coco/annotations/instances_train2017.json", "data/coco/train2017"
        )
    )
    val: DatasetConfig = field(
        default_factory=lambda: DatasetConfig(
            "data/coco/annotations/instances_val2017.json", "data/coco/val2017"
        )
    )
    images_per_gpu: int = 8
    workers_per_gpu: int = 2
    test_images_per_gpu: int = 1
    max_size: int = 1333  # keep-ratio resize to fit (max_size, short_size)
    short_size: int = 800
    # Multi-scale training: short side drawn uniformly from the integers [low, high]; null = off.
    multiscale_short_range: list[int] | None = None
    flip_prob: float = 0.5
    size_divisor: int = 32
    min_image_side: int = 32  # training images smaller than this are dropped
    # True: images that are missing, empty or corrupt are dropped (counted in the check's
    # summary, excluded from evaluation) instead of stopping the run
    skip_unreadable_images: bool = False
    format: DataFormat = "coco"  # dataset layout: coco | voc | yolo (README "Your own data")
    # voc / yolo class list: a YAML file with `names` or a text file with one name per line
    class_names_file: str = ""
    check_images: bool = True  # open every image (header + cheap decode) before step 0
    check_threads: int = 8  # threads of that image pass
    # dataset category id of each contiguous label; filled from the dataset when empty
    category_ids: list[int] = field(default_factory=list)


# -------------------------------------------------------------------------------------- method
@dataclass
class NetworkReference:
    """A network named by its config file and an optional checkpoint (never a copied block)."""

    config: str = ""
    checkpoint: str | None = None


@dataclass
class KnowledgeDistillationConfig:
    """Soft-label (focal-KL) distillation, docs/algorithms.md §3 and §4."""

    gamma: float = 0.5
    cls_weight: float = 10.0
    iou_weight: float = 10.0
    box_weight: float = 1.3
    min_iou: float = 0.1
    use_predicted_boxes: bool = True  # select anchors by the teacher's boxes (False: anchors)
    with_ground_truth_losses: bool = False  # released KD is KD-only; True adds the PAA losses


@dataclass
class CoLADConfig:
    """Co-learning LAD, docs/algorithms.md §5. The method's main model is network 1."""

    second_network: NetworkReference = field(default_factory=NetworkReference)
    criterion: CoLADCriterion = "std_mean"
    evaluate_network: EvaluateNetwork = "second"  # the network used for test, predict and export


@dataclass
class MethodConfig:
    name: MethodName = "baseline"  # "baseline" = PAA self-assignment
    teacher: NetworkReference | None = None
    kd: KnowledgeDistillationConfig = field(default_factory=KnowledgeDistillationConfig)
    colad: CoLADConfig = field(default_factory=CoLADConfig)
    evaluate_teacher: bool = True  # evaluate the teacher once before training


# --------------------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    epochs: int = 12
    lr: float = 0.01  # for base_batch_size images; scaled linearly to the real total batch
    base_batch_size: int = 16
    scale_lr: bool = True
    # "sgd" (the paper's setting) or "adamw" (converges faster from a random init: demo configs)
    optimizer: OptimizerName = "sgd"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    lr_steps: list[int] = field(default_factory=lambda: [8, 11])  # epochs at which lr *= 0.1
    lr_gamma: float = 0.1
    # Autocast policy (src/ladet/engine/precision.py): false (fp32) | float16 (CUDA only, GradScaler;
    # fp32 on the CPU) | bfloat16 (CUDA and CPU, no scaler); true = float16 (older configs).
    amp: AmpPolicy = True
    # SyncBatchNorm for CUDA runs on several processes when BatchNorm is trained (norm_eval false).
    sync_bn: bool = True
    eval_interval: int = 1  # epochs; 0 = only at the end
    checkpoint_interval: int = 1  # epochs
    checkpoint_every_iters: int = 0  # also refresh latest.pth every N iterations (0 = off)
    keep_checkpoints: int = 2  # epoch_N.pth files kept besides latest.pth (the newest; -1 = all)
    export_weights: bool = False  # also write best_weights.pth / final_weights.pth (no optimizer state)
    log_interval: int = 20
    max_iters_per_epoch: int | None = None  # cap for smoke runs
    load_from: str | None = None  # initialise the model (not the optimiser) from a checkpoint
    grad_clip_norm: float | None = None


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    deterministic: bool = False
    # class names in contiguous-label order; filled from the dataset when empty
    class_names: list[str] = field(default_factory=list)
