"""The ``ladet`` command line (also ``python -m ladet`` and ``torchrun -m ladet train ...``).

    ladet train CONFIG --work-dir DIR [--resume auto|PATH] [--force] [--seed N] [--deterministic] [key=value ...]
    ladet test CONFIG --checkpoint CKPT [--out DIR] [key=value ...]
    ladet check-data CONFIG [--split train|val|both] [key=value ...]
    ladet predict CONFIG --checkpoint CKPT INPUTS... --out DIR [--score-threshold S] [key=value ...]
    ladet print-config CONFIG [key=value ...]
    ladet make-dataset --out DIR [--seed N] [--num-train N] [--num-val N]
    ladet visualize-assign CONFIG --checkpoint CKPT IMAGES... --out DIR [key=value ...]
    ladet predict --onnx MODEL.onnx INPUTS... --out DIR [--score-threshold S]
    ladet export CONFIG --checkpoint CKPT --out FILE [--format weights|torchscript|onnx] [--opset N] [key=value ...]
    ladet reproduce [--budget smoke|small|full] [--seeds ...]      (see ``python -m ladet.reproduce -h``)

One grammar everywhere: config overrides are ``key=value`` words anywhere after the config
(``--set key=value`` still works but is deprecated). ``--debug`` may come before or after the
subcommand. Every command ends with one line naming what it wrote, where, and the wall time.

Errors in configs, data or checkpoints print one clean paragraph and exit with code 2
(``--debug`` shows the traceback); a diverging run (non-finite loss) exits with code 1.

Adding a subcommand: write ``_add_<name>(commands)`` (parser + ``set_defaults(handler=...)``)
and list it in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from ladet.checkpoint_io import CheckpointError
from ladet.config.loader import ConfigError, config_to_dict, load_config

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, CheckpointError, OSError, ValueError, KeyError)
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 1
# a config override: a (dotted) key, "=", a value; paths with "=" that exist are not overrides
_OVERRIDE_PATTERN = re.compile(r"[A-Za-z_]\w*(\.\w+)*=.*", re.S)
SET_DEPRECATION = (
    "ladet: warning: --set is deprecated: write overrides as key=value words after the config "
    "(e.g. `ladet predict CONFIG --checkpoint CKPT photo.jpg --out preds model.test.score_threshold=0.05`)"
)


# ------------------------------------------------------------------------------ shared arguments
def looks_like_override(token: str) -> bool:
    """True for ``section.key=value`` words (and not for an existing file whose name has "=")."""
    return bool(_OVERRIDE_PATTERN.fullmatch(token)) and not Path(token).exists()


class _DeprecatedSet(argparse.Action):
    """``--set key=value ...``: the old spelling of overrides (warns once per use)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        print(SET_DEPRECATION, file=sys.stderr)
        namespace.set_words = [*getattr(namespace, "set_words", []), *(values or [])]


def _global_options(parser: argparse.ArgumentParser, top_level: bool) -> None:
    # on subcommands the default is SUPPRESS so that `ladet --debug train ...` is not reset
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top_level else argparse.SUPPRESS,
        help="show the Python traceback of configuration, data and checkpoint errors",
    )


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", help="the experiment's YAML config, e.g. configs/paa/paa_r50_fpn_1x_coco.yaml"
    )


def _overrides(parser: argparse.ArgumentParser, example: str, positional: bool = True) -> None:
    """``key=value`` words (positional) and the deprecated ``--set`` alias."""
    if positional:
        parser.add_argument(
            "overrides",
            nargs="*",
            metavar="key=value",
            help=f"dotted config overrides, anywhere after the config, e.g. {example}",
        )
    parser.add_argument(
        "--set",
        dest="set_words",
        nargs="*",
        default=[],
        action=_DeprecatedSet,
        metavar="key=value",
        help="deprecated spelling of the key=value overrides",
    )


def _checkpoint_argument(parser: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    parser.add_argument(
        "--checkpoint",
        required=required,
        help=f"{what}, e.g. runs/demo/small/baseline_seed0/latest.pth (a training checkpoint or a "
        "`ladet export` file)",
    )


def _subparser(commands: Any, name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, top_level=False)
    return parser


def _finish(arguments: argparse.Namespace, message: str) -> None:
    """The closing line of a command: what it wrote, where, and the command's wall time."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    seconds = time.perf_counter() - arguments.started
    print(f"ladet {arguments.command}: {message} ({seconds:.0f} s)", flush=True)


# ------------------------------------------------------------------------------------- commands
def _command_train(arguments: argparse.Namespace) -> int:
    from ladet.engine import train
    from ladet.engine.distributed import shutdown_distributed

    config = load_config(arguments.config, arguments.overrides)
    if arguments.seed is not None:
        config.seed = arguments.seed
    if arguments.deterministic:
        config.deterministic = True
    work_dir_existed = Path(arguments.work_dir).exists()
    try:
        train(config, arguments.work_dir, arguments.resume, force=arguments.force)
    except BaseException:
        if not work_dir_existed:
            remove_failed_work_dir(Path(arguments.work_dir))
        raise
    finally:
        shutdown_distributed()
    _finish(arguments, describe_run_folder(Path(arguments.work_dir)))
    return 0


def remove_failed_work_dir(work_dir: Path) -> bool:
    """Deletes a work dir this command created when the run failed before any checkpoint (rank 0)."""
    if int(os.environ.get("RANK", "0")) != 0 or not work_dir.is_dir() or any(work_dir.glob("*.pth")):
        return False
    shutil.rmtree(work_dir, ignore_errors=True)
    return True


def describe_run_folder(work_dir: Path) -> str:
    """``wrote latest.pth, epoch_12.pth, metrics_epoch_12.json, log.jsonl, tensorboard/ to DIR``."""
    epochs = sorted(work_dir.glob("epoch_*.pth"), key=lambda path: path.stat().st_mtime)
    metrics = sorted(work_dir.glob("metrics_epoch_*.json"), key=lambda path: path.stat().st_mtime)
    names = ["latest.pth", *(path.name for path in epochs[-1:]), *(path.name for path in metrics[-1:])]
    names += [
        name for name in ("best_weights.pth", "final_weights.pth", "log.jsonl") if (work_dir / name).exists()
    ]
    names = [name for name in names if (work_dir / name).exists()]
    if (work_dir / "tensorboard").is_dir():
        names.append("tensorboard/")
    return f"wrote {', '.join(names)} to {work_dir}"


def _command_test(arguments: argparse.Namespace) -> int:
    from ladet.data import build_val_loader, resolve_classes, run_data_check
    from ladet.engine.distributed import init_distributed, shutdown_distributed
    from ladet.engine.evaluate import evaluate
    from ladet.engine.precision import precision_policy
    from ladet.evaluation.coco import build_dataset_evaluator
    from ladet.evaluation.metrics_json import metrics_to_json
    from ladet.predictor import load_evaluation_detector

    config = load_config(arguments.config, arguments.overrides)
    context = init_distributed()
    try:
        resolve_classes(config)
        run_data_check(config, ("val",), context.is_main)
        detector = load_evaluation_detector(config, arguments.checkpoint, context.device)
        loader = build_val_loader(config, context.rank, context.world_size)
        dataset: Any = loader.dataset  # a DetectionDataset
        evaluator = build_dataset_evaluator(config, dataset)
        metrics = evaluate(
            detector,
            loader,
            evaluator,
            context.device,
            context.is_main,
            title=str(arguments.checkpoint),
            precision=precision_policy(config.train.amp, context.device),
        )
        if context.is_main:
            out = Path(arguments.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "metrics.json").write_text(
                json.dumps(metrics_to_json(metrics), indent=2, allow_nan=False), encoding="utf-8"
            )
            evaluator.write_results_json(out / "results.json")
            _finish(
                arguments,
                f"AP {100 * float(metrics['AP']):.1f} % on {metrics.get('num_images', '?')} images; "
                f"wrote metrics.json and results.json to {out}",
            )
    finally:
        shutdown_distributed()
    return 0


def _command_check_data(arguments: argparse.Namespace) -> int:
    from ladet.data import check_data, resolve_classes

    config = load_config(arguments.config, arguments.overrides)
    splits = {"train": ("train",), "val": ("val",), "both": ("train", "val")}[arguments.split]
    try:
        resolve_classes(config)
    except ValueError as error:  # still check the data; the class mismatch is part of the verdict
        class_error: ValueError | None = error
    else:
        class_error = None
    report = check_data(config, splits)
    if class_error is not None:
        report.extra_errors.append(str(class_error))
    print(report.format_summary())
    return EXIT_USER_ERROR if report.errors() else 0


def _command_predict(arguments: argparse.Namespace) -> int:
    from ladet.data.images import read_rgb_image
    from ladet.evaluation.coco import detections_to_coco_results
    from ladet.predictor import Predictor, dataset_image_ids, expand_image_paths
    from ladet.vis.detections import (
        DEFAULT_MAX_DRAWN,
        DEFAULT_SCORE_THRESHOLD,
        draw_detections,
        model_name,
    )

    threshold = DEFAULT_SCORE_THRESHOLD if arguments.score_threshold is None else arguments.score_threshold
    max_drawn = DEFAULT_MAX_DRAWN if arguments.max_drawn is None else arguments.max_drawn
    predictor: Any
    onnx_model = arguments.onnx or str(arguments.config).endswith(".onnx")
    if onnx_model:  # `predict --onnx MODEL INPUTS...`
        predictor = _onnx_predictor(arguments.config)
        caption_model = Path(arguments.config).name
    else:
        if arguments.checkpoint is None:
            raise ValueError(
                "ladet predict needs --checkpoint CKPT (or --onnx MODEL.onnx in place of CONFIG)"
            )
        predictor = Predictor.from_checkpoint(
            arguments.config, arguments.checkpoint, arguments.device, arguments.overrides
        )
        caption_model = model_name(arguments.config, arguments.checkpoint)
    paths = expand_image_paths(arguments.inputs)
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    # an ONNX model carries no dataset: its results name the files
    image_ids = [str(path) for path in paths] if onnx_model else dataset_image_ids(predictor.config, paths)
    for image_id, path in zip(image_ids, paths, strict=True):
        image = read_rgb_image(path)
        detections = predictor(image)[0]
        keep = detections.scores >= threshold
        detections = type(detections)(
            detections.boxes[keep], detections.scores[keep], detections.labels[keep]
        )
        draw_detections(
            image,
            detections,
            predictor.class_names,
            score_threshold=threshold,
            min_display_side=512,
            max_drawn=max_drawn,
            caption=True,
            model=caption_model,
        ).save(out / f"{path.stem}.png")
        for record in detections_to_coco_results(0, detections, predictor.category_ids):
            record["image_id"] = image_id  # the dataset's id, or the file name outside a dataset
            record["file_name"] = str(path)
            record["category_name"] = predictor.class_names[
                predictor.category_ids.index(record["category_id"])
            ]
            results.append(record)
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    _finish(
        arguments,
        f"{len(paths)} image(s), {len(results)} detection(s) ≥ {threshold:g}; "
        f"wrote {len(paths)} picture(s) and results.json to {out}",
    )
    return 0


def _onnx_predictor(model: str) -> Any:
    """An ``OnnxPredictor`` whose call returns torch :class:`Detections` (for drawing / COCO JSON)."""
    import torch

    from ladet.deploy import OnnxPredictor
    from ladet.structures import Detections

    class TorchDetectionsOnnxPredictor(OnnxPredictor):
        def __call__(self, images: Any) -> Any:
            return [
                Detections(torch.from_numpy(d.boxes), torch.from_numpy(d.scores), torch.from_numpy(d.labels))
                for d in super().__call__(images)
            ]

    return TorchDetectionsOnnxPredictor(model)


def _command_print_config(arguments: argparse.Namespace) -> int:
    config = load_config(arguments.config, arguments.overrides)
    print(yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None), end="")
    return 0


def _command_make_dataset(arguments: argparse.Namespace) -> int:
    from ladet.data import make_builtin_dataset

    paths = make_builtin_dataset(
        arguments.out,
        seed=arguments.seed,
        num_train=arguments.num_train,
        num_val=arguments.num_val,
        image_size=(arguments.min_side, arguments.max_side),
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    _finish(
        arguments,
        f"wrote {arguments.num_train} train and {arguments.num_val} val images with COCO annotations to {arguments.out}",
    )
    return 0


def _command_visualize_assign(arguments: argparse.Namespace) -> int:
    from ladet.predictor import expand_image_paths
    from ladet.vis.visualize_assign import visualize_assignments

    config = load_config(arguments.config, arguments.overrides)
    images = [str(path) for path in expand_image_paths(arguments.inputs)]
    written = visualize_assignments(
        config, arguments.checkpoint, images, arguments.out, arguments.annotations
    )
    for path in written:
        print(path)
    _finish(arguments, f"wrote {len(written)} assignment picture(s) to {arguments.out}")
    return 0


def _command_export(arguments: argparse.Namespace) -> int:
    from ladet.export import export_detector

    config = load_config(arguments.config, arguments.overrides)
    export_format = "torchscript" if arguments.torchscript else arguments.format
    if export_format == "onnx":
        from ladet.export import export_onnx

        path = export_onnx(config, arguments.checkpoint, arguments.out, opset=arguments.opset)
        _finish(arguments, f"wrote the ONNX graph (opset {arguments.opset}) to {path}")
        return 0
    path = export_detector(
        config, arguments.checkpoint, arguments.out, torchscript=export_format == "torchscript"
    )
    kind = "TorchScript trace" if export_format == "torchscript" else "weights (no optimizer state)"
    _finish(arguments, f"wrote the {kind} to {path}")
    return 0


# -------------------------------------------------------------------------------------- parsers
def _add_train(commands: Any) -> None:
    train = _subparser(
        commands,
        "train",
        "train a method (works under torchrun)",
        "ladet train configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml --work-dir runs/r18 train.epochs=1\n"
        "  (train.epochs=N alone also rescales the config's train.lr_steps to N epochs)",
    )
    _config_argument(train)
    train.add_argument(
        "--work-dir", required=True, help="run folder: checkpoints, logs, metrics, config.yaml"
    )
    train.add_argument(
        "--resume", default=None, help="'auto' (WORK_DIR/latest.pth if present) or a checkpoint path"
    )
    train.add_argument(
        "--force",
        action="store_true",
        help="fresh run into a work dir holding another run: move its files to WORK_DIR/previous_<time>/",
    )
    train.add_argument("--seed", type=int, default=None, help="random seed (overrides the config's seed)")
    train.add_argument("--deterministic", action="store_true", help="deterministic algorithms (exact resume)")
    _overrides(train, "train.epochs=1 data.images_per_gpu=4")
    train.set_defaults(handler=_command_train)


def _add_test(commands: Any) -> None:
    test = _subparser(
        commands,
        "test",
        "evaluate a checkpoint on data.val (no teacher needed)",
        "ladet test configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml "
        "--checkpoint runs/demo/small/baseline_seed0/latest.pth --out runs/test \\\n"
        "      data.val.ann_file=data/builtin_small/annotations/val.json data.val.image_dir=data/builtin_small/val",
    )
    _config_argument(test)
    _checkpoint_argument(test, "weights to evaluate")
    test.add_argument("--out", default="test_results", help="folder for metrics.json and results.json")
    _overrides(test, "data.val.ann_file=my/val.json data.test_images_per_gpu=4")
    test.set_defaults(handler=_command_test)


def _add_check_data(commands: Any) -> None:
    check = _subparser(
        commands,
        "check-data",
        "check annotations and every image of the config's data; summary table",
        "ladet check-data configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml --split val",
    )
    _config_argument(check)
    check.add_argument(
        "--split", choices=("train", "val", "both"), default="both", help="which data of the config to check"
    )
    _overrides(check, "data.val.ann_file=my/val.json")
    check.set_defaults(handler=_command_check_data)


def _add_predict(commands: Any) -> None:
    from ladet.vis.detections import DEFAULT_MAX_DRAWN, DEFAULT_SCORE_THRESHOLD

    predict = _subparser(
        commands,
        "predict",
        "draw detections on images / folders and write COCO JSON",
        "ladet predict configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml "
        "--checkpoint runs/demo/small/baseline_seed0/latest.pth data/builtin_small/val/000001.jpg --out preds/",
    )
    predict.add_argument(
        "config",
        help="the experiment's YAML config, e.g. configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml; with --onnx "
        "(or a *.onnx path) the graph written by `ladet export --format onnx`",
    )
    _checkpoint_argument(predict, "weights to run (not with --onnx)", required=False)
    predict.add_argument(
        "--onnx",
        action="store_true",
        help="CONFIG is a graph written by `ladet export --format onnx` (no --checkpoint, no PyTorch model)",
    )
    predict.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="image files and folders of images; key=value words among them are config overrides, "
        "e.g. model.test.nms_iou_threshold=0.5",
    )
    predict.add_argument("--out", required=True, help="folder for the pictures and results.json")
    predict.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help=f"lowest score kept in pictures and results.json (default {DEFAULT_SCORE_THRESHOLD})",
    )
    predict.add_argument(
        "--max-drawn",
        type=int,
        default=None,
        help=f"at most this many boxes drawn per picture, the best first (default {DEFAULT_MAX_DRAWN})",
    )
    predict.add_argument("--device", default="cpu", help="cpu or cuda")
    _overrides(predict, "", positional=False)
    predict.set_defaults(handler=_command_predict, image_words=True)


def _add_print_config(commands: Any) -> None:
    show = _subparser(
        commands,
        "print-config",
        "print the resolved config as YAML",
        "ladet print-config configs/lad/lad_r50-paa-r101_fpn_2x8_coco_1x.yaml train.epochs=24",
    )
    _config_argument(show)
    _overrides(show, "train.epochs=24")
    show.set_defaults(handler=_command_print_config)


def _add_make_dataset(commands: Any) -> None:
    dataset = _subparser(
        commands,
        "make-dataset",
        "write the built-in synthetic COCO-format dataset",
        "ladet make-dataset --out data/builtin --num-train 400 --num-val 100",
    )
    dataset.add_argument("--out", required=True, help="folder for annotations/, train/ and val/")
    dataset.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same dataset)")
    dataset.add_argument("--num-train", type=int, default=400, help="training images")
    dataset.add_argument("--num-val", type=int, default=100, help="validation images")
    dataset.add_argument("--min-side", type=int, default=256, help="smallest image side in pixels")
    dataset.add_argument("--max-side", type=int, default=320, help="largest image side in pixels")
    dataset.set_defaults(handler=_command_make_dataset)


def _add_visualize_assign(commands: Any) -> None:
    visualize = _subparser(
        commands,
        "visualize-assign",
        "draw teacher vs student label assignments",
        "ladet visualize-assign configs/demo/lad_r18-paa-r34_fpn_1x8_builtin_demo.yaml \\\n"
        "      --checkpoint runs/demo/small/lad_seed0/latest.pth data/builtin_small/val/000001.jpg --out pictures/ \\\n"
        "      method.teacher.checkpoint=runs/demo/small/teacher/latest.pth",
    )
    _config_argument(visualize)
    _checkpoint_argument(visualize, "the method's training checkpoint")
    visualize.add_argument(
        "inputs",
        nargs="*",
        metavar="IMAGE",
        help="images and folders of images; key=value words among them are config overrides, "
        "e.g. method.teacher.checkpoint=runs/demo/small/teacher/latest.pth",
    )
    visualize.add_argument("--out", required=True, help="folder for the PNG pictures")
    visualize.add_argument(
        "--annotations", default=None, help="COCO JSON with the GT boxes (default: data.val.ann_file)"
    )
    _overrides(visualize, "", positional=False)
    visualize.set_defaults(handler=_command_visualize_assign, image_words=True)


def _add_export(commands: Any) -> None:
    export = _subparser(
        commands,
        "export",
        "export the evaluation network (weights without optimizer state, or TorchScript)",
        "ladet export configs/demo/lad_r18-paa-r34_fpn_1x8_builtin_demo.yaml "
        "--checkpoint runs/demo/small/lad_seed0/latest.pth --out student.pth",
    )
    _config_argument(export)
    _checkpoint_argument(export, "weights to export")
    export.add_argument("--out", required=True, help="the file to write, e.g. student.pth")
    export.add_argument(
        "--format",
        choices=("weights", "torchscript", "onnx"),
        default="weights",
        help="weights (no optimizer state), a TorchScript trace, or an end-to-end ONNX graph",
    )
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (--format onnx)")
    export.add_argument("--torchscript", action="store_true", help="same as --format torchscript")
    _overrides(export, "method.colad.evaluate_network=first")
    export.set_defaults(handler=_command_export)


def _add_reproduce(commands: Any) -> None:
    reproduce = _subparser(
        commands,
        "reproduce",
        "miniature Table 2 on the built-in data (teacher, baseline, LAD, SoLAD)",
        "ladet reproduce --budget smoke",
    )
    reproduce.add_argument("options", nargs="*", help="options of `python -m ladet.reproduce --help`")


SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_train,
    _add_test,
    _add_check_data,
    _add_predict,
    _add_print_config,
    _add_make_dataset,
    _add_visualize_assign,
    _add_export,
    _add_reproduce,
)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ladet")
    except metadata.PackageNotFoundError:
        from ladet import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ladet",
        description="PAA detectors with label assignment distillation. Config overrides are "
        "key=value words after the config in every command; --debug may come anywhere.",
        epilog="`ladet COMMAND -h` shows each command's arguments and an example.",
    )
    parser.add_argument("--version", action="version", version=f"ladet {_version()}")
    _global_options(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def _clean_message(error: BaseException) -> str:
    message = str(error)
    if isinstance(error, KeyError) and error.args:
        message = str(error.args[0])
    return f"ladet: error: {type(error).__name__}: {message}"


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parses ``argv``; gathers ``key=value`` words (wherever they are) into ``overrides``."""
    # overrides may follow options (`train CFG --work-dir D train.epochs=2`): collect leftovers
    arguments, extras = parser.parse_known_args(argv)
    words = [*getattr(arguments, "set_words", []), *extras]
    if getattr(arguments, "image_words", False):
        words = [*arguments.inputs, *words]
        arguments.inputs = [word for word in words if not looks_like_override(word)]
        words = [word for word in words if looks_like_override(word)]
        if not arguments.inputs:
            parser.error(f"{arguments.command}: give at least one image or folder")
        arguments.overrides = []
    unknown = [word for word in words if not looks_like_override(word)]
    if unknown or (words and not hasattr(arguments, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or words)}")
    if words:
        arguments.overrides = [*arguments.overrides, *words]
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the process exit code."""
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    leading = [word for word in argv if word != "--debug"]
    if leading[:1] == ["reproduce"]:  # its own option parser (ladet.reproduce)
        from ladet.reproduce import main as reproduce_main

        return reproduce_main(leading[1:])
    parser = build_parser()
    arguments = parse_arguments(parser, argv)
    arguments.started = started
    handler: Callable[[argparse.Namespace], int] = arguments.handler
    from ladet.engine.loop import NonFiniteLossError

    try:
        return handler(arguments)
    except NonFiniteLossError as error:
        if arguments.debug:
            traceback.print_exc()
        print(f"ladet: training stopped: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except USER_ERRORS as error:
        if arguments.debug:
            traceback.print_exc()
        print(_clean_message(error), file=sys.stderr)
        return EXIT_USER_ERROR
