"""``ladet check-data``: every annotation rule and every image, checked before step 0.

Usage::

    report = check_data(config, splits=("train", "val"))  # parses, runs the image pass
    print(report.format_summary())
    report.raise_on_errors()  # DataCheckError with the whole summary

The image pass opens every image of the split header-first (exists, non-empty, decodable, size
equal to the annotation's, supported mode; see :func:`ladet.data.images.inspect_image`) on
``data.check_threads`` threads with a tqdm progress bar; ``data.check_images=false`` turns it off
for huge sets. With ``data.skip_unreadable_images=true`` missing, empty and corrupt images are
dropped from the split (and so excluded from evaluation) instead of stopping the run.
"""

from __future__ import annotations

import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ladet.config.schema import Config
from ladet.data.classes import dataset_categories
from ladet.data.images import inspect_image
from ladet.data.loading import load_annotations
from ladet.data.problems import SKIPPABLE_IMAGE_PROBLEMS
from ladet.data.records import DatasetAnnotations
from ladet.engine.progress import progress_bar  # tqdm on a terminal, plain lines in logs

logger = logging.getLogger(__name__)


class DataCheckError(ValueError):
    """The dataset has problems whose action is "error"; the message is the whole summary."""


@dataclass
class DataCheckReport:
    """What :func:`check_data` found, per split."""

    splits: dict[str, DatasetAnnotations] = field(default_factory=dict)
    images_checked: int = 0
    seconds: float = 0.0
    extra_errors: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        found = [f"{name}: {kind}" for name, split in self.splits.items() for kind in split.problems.errors()]
        return found + self.extra_errors

    def format_summary(self) -> str:
        lines = ["ladet data check"]
        for split in self.splits.values():
            boxes = sum(len(record.boxes) for record in split.records)
            header = f"{split.problems.title}: {len(split.records)} images, {boxes} boxes, {len(split.category_ids)} classes"
            lines.append(split.problems.format_table(header))
        lines.extend(f"error: {message}" for message in self.extra_errors)
        if self.images_checked:
            rate = self.images_checked / max(self.seconds, 1e-9)
            lines.append(
                f"image pass: {self.images_checked} images in {self.seconds:.2f} s ({rate:.0f} images/s)"
            )
        verdict = "FAILED: " + ", ".join(self.errors()) if self.errors() else "OK"
        lines.append(f"result: {verdict}")
        return "\n".join(lines)

    def raise_on_errors(self) -> None:
        if self.errors():
            raise DataCheckError("the data check found errors; nothing was trained\n" + self.format_summary())


def check_images(annotations: DatasetAnnotations, threads: int = 8, progress: bool = True) -> int:
    """Runs the image pass on one split, records the problems, drops skippable unreadable images.

    Returns:
        The number of images checked.
    """
    records = annotations.records
    paths = [annotations.image_dir / record.file_name for record in records]
    sizes = [(record.width, record.height) for record in records]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(
            progress_bar(
                pool.map(
                    lambda args: inspect_image(*args),
                    [(p, w, h) for p, (w, h) in zip(paths, sizes, strict=True)],
                ),
                total=len(paths),
                desc=f"checking images ({annotations.problems.title.split(' ')[0]})",
                unit="img",
                disable=not progress,
                file=sys.stderr,
                leave=False,
            )
        )
    by_kind: dict[str, list[str]] = {}
    unreadable: set[int] = set()
    for record, found in zip(records, results, strict=True):
        for kind, detail in found:
            by_kind.setdefault(kind, []).append(f"{detail} (image id {record.image_id})")
            if kind in SKIPPABLE_IMAGE_PROBLEMS:
                unreadable.add(record.image_id)
    for kind, examples in by_kind.items():
        annotations.problems.add(kind, examples)
    if unreadable and annotations.problems.action("image_missing") == "drop":
        annotations.exclude_images(unreadable)
    return len(records)


def check_data(
    config: Config,
    splits: tuple[str, ...] = ("train", "val"),
    images: bool | None = None,
    progress: bool = True,
) -> DataCheckReport:
    """Parses the given splits, runs the image pass (``data.check_images`` unless ``images`` says
    otherwise) once per split and process, and checks the classes against ``model.num_classes``.

    Raises:
        ValueError: malformed annotations (one clean line naming the file and record).
    """
    report = DataCheckReport()
    run_images = config.data.check_images if images is None else images
    for split in splits:
        annotations = load_annotations(config, split)
        name = "train" if split == "train" else "val"
        report.splits[name] = annotations
        if run_images and not annotations.images_checked:
            start = time.perf_counter()
            report.images_checked += check_images(annotations, config.data.check_threads, progress)
            report.seconds += time.perf_counter() - start
            annotations.images_checked = True
    found = dataset_categories(config)
    if (
        found is not None
        and config.model.num_classes is not None
        and config.model.num_classes != len(found[0])
    ):
        report.extra_errors.append(
            f"model.num_classes={config.model.num_classes} but the dataset ({found[2]}) has {len(found[0])} categories"
        )
    if "train" in report.splits and "val" in report.splits:
        train, val = report.splits["train"], report.splits["val"]
        if train.category_ids != val.category_ids or train.class_names != val.class_names:
            report.extra_errors.append(
                f"data.train and data.val have different categories: {list(zip(train.category_ids, train.class_names, strict=True))} "
                f"vs {list(zip(val.category_ids, val.class_names, strict=True))}"
            )
    return report


def run_data_check(config: Config, splits: tuple[str, ...], is_main: bool = True) -> DataCheckReport:
    """The check at the start of ``train`` / ``test``: prints the summary (warnings at WARNING
    level when there are any) on the main process and raises :class:`DataCheckError` on errors."""
    report = check_data(config, splits, progress=is_main)
    report.raise_on_errors()
    if is_main:
        if any(split.problems.entries for split in report.splits.values()):
            logger.warning("%s", report.format_summary())
        else:
            images = sum(len(split.records) for split in report.splits.values())
            print(f"data check: {images} images, no problems found", flush=True)
    return report
