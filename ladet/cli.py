"""The ``ladet`` command line (also ``python -m ladet`` and ``torchrun -m ladet train ...``).

    ladet train CONFIG --work-dir DIR [--resume auto|PATH] [--force] [--seed N] [--deterministic] [key=value ...]
    ladet test CONFIG --checkpoint CKPT [--out DIR] [key=value ...]
    ladet check-data CONFIG [--split train|val|both] [key=value ...]
    ladet predict CONFIG --checkpoint CKPT INPUTS... --out DIR [--score-threshold S]
    ladet predict --onnx MODEL.onnx INPUTS... --out DIR [--score-threshold S]
    ladet print-config CONFIG [key=value ...]
    ladet make-dataset --out DIR [--seed N] [--num-train N] [--num-val N]
    ladet visualize-assign CONFIG --checkpoint CKPT IMAGES... --out DIR
    ladet export CONFIG --checkpoint CKPT --out FILE [--format weights|torchscript|onnx] [--opset N]

Errors in configs, data or checkpoints print one clean paragraph and exit with code 2
(``--debug`` shows the traceback); a diverging run (non-finite loss) exits with code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def _overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.epochs=2"
    )


def _command_train(arguments: argparse.Namespace) -> int:
    from ladet.engine import train
    from ladet.engine.distributed import shutdown_distributed

    config = load_config(arguments.config, arguments.overrides)
    if arguments.seed is not None:
        config.seed = arguments.seed
    if arguments.deterministic:
        config.deterministic = True
    try:
        train(config, arguments.work_dir, arguments.resume, force=arguments.force)
    finally:
        shutdown_distributed()
    return 0


def _command_test(arguments: argparse.Namespace) -> int:
    from ladet.data import build_val_loader, resolve_classes, run_data_check
    from ladet.engine.distributed import init_distributed, shutdown_distributed
    from ladet.engine.evaluate import evaluate
    from ladet.engine.precision import precision_policy
    from ladet.evaluation.coco import build_dataset_evaluator
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
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
            evaluator.write_results_json(out / "results.json")
            print(f"wrote {out / 'metrics.json'} and {out / 'results.json'}")
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
    from ladet.vis import draw_detections

    predictor: Any
    onnx_model = arguments.onnx or str(arguments.config).endswith(".onnx")
    if onnx_model:  # `predict --onnx MODEL INPUTS...`
        predictor = _onnx_predictor(arguments.config)
    else:
        if arguments.checkpoint is None:
            raise ValueError(
                "ladet predict needs --checkpoint CKPT (or --onnx MODEL.onnx in place of CONFIG)"
            )
        predictor = Predictor.from_checkpoint(
            arguments.config, arguments.checkpoint, arguments.device, arguments.overrides
        )
    paths = expand_image_paths(arguments.inputs)
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    # an ONNX model carries no dataset: its results name the files
    image_ids = [str(path) for path in paths] if onnx_model else dataset_image_ids(predictor.config, paths)
    for image_id, path in zip(image_ids, paths, strict=True):
        image = read_rgb_image(path)
        detections = predictor(image)[0]
        keep = detections.scores >= arguments.score_threshold
        detections = type(detections)(
            detections.boxes[keep], detections.scores[keep], detections.labels[keep]
        )
        draw_detections(
            image,
            detections,
            predictor.class_names,
            score_threshold=arguments.score_threshold,
            min_display_side=512,
        ).save(out / f"{path.stem}.png")
        for record in detections_to_coco_results(0, detections, predictor.category_ids):
            record["image_id"] = image_id  # the dataset's id, or the file name outside a dataset
            record["file_name"] = str(path)
            record["category_name"] = predictor.class_names[
                predictor.category_ids.index(record["category_id"])
            ]
            results.append(record)
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    print(f"{len(paths)} image(s), {len(results)} detection(s) -> {out}")
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
    return 0


def _command_visualize_assign(arguments: argparse.Namespace) -> int:
    from ladet.predictor import expand_image_paths
    from ladet.vis.visualize_assign import visualize_assignments

    config = load_config(arguments.config, arguments.overrides)
    images = [str(path) for path in expand_image_paths(arguments.images)]
    written = visualize_assignments(
        config, arguments.checkpoint, images, arguments.out, arguments.annotations
    )
    for path in written:
        print(path)
    return 0


def _command_export(arguments: argparse.Namespace) -> int:
    from ladet.export import export_detector, export_onnx

    config = load_config(arguments.config, arguments.overrides)
    export_format = "torchscript" if arguments.torchscript else arguments.format
    if export_format == "onnx":
        path = export_onnx(config, arguments.checkpoint, arguments.out, opset=arguments.opset)
        print(f"exported ONNX graph (opset {arguments.opset}) -> {path}")
        return 0
    path = export_detector(
        config, arguments.checkpoint, arguments.out, torchscript=export_format == "torchscript"
    )
    print(f"exported {'TorchScript trace' if export_format == 'torchscript' else 'weights'} -> {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ladet", description="PAA detectors with label assignment distillation"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of configuration/data errors")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a method (works under torchrun)")
    train.add_argument("config")
    train.add_argument("--work-dir", required=True)
    train.add_argument(
        "--resume", default=None, help="'auto' (work-dir/latest.pth if present) or a checkpoint"
    )
    train.add_argument(
        "--force",
        action="store_true",
        help="fresh run into a work dir holding another run: move its files to WORK_DIR/previous_<time>/",
    )
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--deterministic", action="store_true", help="deterministic algorithms (exact resume)")
    _overrides(train)
    train.set_defaults(handler=_command_train)

    test = commands.add_parser("test", help="evaluate a checkpoint on data.val (no teacher needed)")
    test.add_argument("config")
    test.add_argument("--checkpoint", required=True)
    test.add_argument("--out", default="test_results")
    _overrides(test)
    test.set_defaults(handler=_command_test)

    check = commands.add_parser(
        "check-data", help="check annotations and every image of the config's data; summary table"
    )
    check.add_argument("config")
    check.add_argument("--split", choices=("train", "val", "both"), default="both")
    _overrides(check)
    check.set_defaults(handler=_command_check_data)

    predict = commands.add_parser("predict", help="draw detections on images / folders and write COCO JSON")
    predict.add_argument("config", help="the config YAML; with --onnx (or a *.onnx path) the exported model")
    predict.add_argument("--checkpoint", default=None)
    predict.add_argument(
        "--onnx",
        action="store_true",
        help="CONFIG is a graph written by `ladet export --format onnx` (no --checkpoint, no PyTorch model)",
    )
    predict.add_argument("inputs", nargs="+", metavar="INPUT")
    predict.add_argument("--out", required=True)
    predict.add_argument("--score-threshold", type=float, default=0.3)
    predict.add_argument("--device", default="cpu")
    predict.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="key=value")
    predict.set_defaults(handler=_command_predict)

    show = commands.add_parser("print-config", help="print the resolved config as YAML")
    show.add_argument("config")
    _overrides(show)
    show.set_defaults(handler=_command_print_config)

    dataset = commands.add_parser("make-dataset", help="write the built-in synthetic COCO-format dataset")
    dataset.add_argument("--out", required=True)
    dataset.add_argument("--seed", type=int, default=0)
    dataset.add_argument("--num-train", type=int, default=400)
    dataset.add_argument("--num-val", type=int, default=100)
    dataset.add_argument("--min-side", type=int, default=256)
    dataset.add_argument("--max-side", type=int, default=320)
    dataset.set_defaults(handler=_command_make_dataset)

    visualize = commands.add_parser("visualize-assign", help="draw teacher vs student label assignments")
    visualize.add_argument("config")
    visualize.add_argument("--checkpoint", required=True)
    visualize.add_argument("images", nargs="+", metavar="IMAGE")
    visualize.add_argument("--out", required=True)
    visualize.add_argument(
        "--annotations", default=None, help="COCO JSON with the GT boxes (default data.val)"
    )
    visualize.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="key=value")
    visualize.set_defaults(handler=_command_visualize_assign)

    export = commands.add_parser(
        "export", help="export the evaluation network (weights, TorchScript or an end-to-end ONNX graph)"
    )
    export.add_argument("config")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--format", choices=("weights", "torchscript", "onnx"), default="weights")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (--format onnx)")
    export.add_argument("--torchscript", action="store_true", help="same as --format torchscript")
    _overrides(export)
    export.set_defaults(handler=_command_export)

    reproduce = commands.add_parser(
        "reproduce", help="miniature Table 2 on the built-in data (teacher, baseline, LAD, SoLAD)"
    )
    reproduce.add_argument("options", nargs="*", help="options of `python -m ladet.reproduce --help`")
    return parser


def _clean_message(error: BaseException) -> str:
    message = str(error)
    if isinstance(error, KeyError) and error.args:
        message = str(error.args[0])
    return f"ladet: error: {type(error).__name__}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reproduce"]:  # its own option parser (ladet.reproduce)
        from ladet.reproduce import main as reproduce_main

        return reproduce_main(argv[1:])
    parser = build_parser()
    # overrides may follow options (`train CFG --work-dir D train.epochs=2`): collect leftovers
    arguments, extras = parser.parse_known_args(argv)
    unknown = [extra for extra in extras if extra.startswith("-") or "=" not in extra]
    if unknown or (extras and not hasattr(arguments, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extras)}")
    if extras:
        arguments.overrides = [*arguments.overrides, *extras]
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
