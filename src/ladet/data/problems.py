"""Problems found in a dataset, counted per kind, with examples and the action ladet takes.

Every reader (COCO, VOC, YOLO) and the image pass of :mod:`ladet.data.check` report what they
find here instead of logging it, so that one summary table (``ladet check-data`` and the start of
``train`` / ``test``) shows everything at once::

    problems = ProblemLog("data.train")
    problems.add("box_partly_outside", ["annotation id 7 (image id 3): x2 = 153 > width 128"])
    problems.errors()  # kinds whose action is "error"
    print(problems.format_table())

Actions: ``error`` (stop before step 0), ``drop`` (the box / image is left out), ``clip`` (the box
is clipped to the image), ``convert`` (the image is converted), ``ignore`` (kept out of training,
kept as an ignore region in evaluation), ``note`` (nothing changes; told so that nothing is silent).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

MAX_EXAMPLES = 3


@dataclass(frozen=True)
class ProblemKind:
    """One kind of problem: what it is and what ladet does about it."""

    description: str
    action: str  # error | drop | clip | convert | ignore | note


PROBLEM_KINDS: dict[str, ProblemKind] = {
    # images (the image pass of ladet.data.check)
    "image_missing": ProblemKind("image file missing", "error"),
    "image_empty": ProblemKind("image file has zero bytes", "error"),
    "image_undecodable": ProblemKind("image cannot be decoded (corrupt or truncated)", "error"),
    "image_size_mismatch": ProblemKind("image size differs from the annotation's width/height", "error"),
    "image_mode_unsupported": ProblemKind("image pixel mode not supported", "error"),
    "image_high_bit_depth": ProblemKind("16-bit image: scaled to 8 bits (v * 255 / 65535)", "convert"),
    "image_exif_rotated": ProblemKind(
        "EXIF orientation tag != 1: pixels are used as stored (not rotated)", "note"
    ),
    # boxes
    "box_partly_outside": ProblemKind("box partly outside the image", "clip"),
    "box_outside": ProblemKind("box outside the image (< 1 px inside)", "drop"),
    "box_degenerate": ProblemKind("box with width or height < 1 px", "drop"),
    "box_crowd": ProblemKind("crowd / difficult box: not trained on, ignore region in evaluation", "ignore"),
    "area_not_positive": ProblemKind(
        "'area' <= 0 (used only for the COCO small/medium/large split): w * h used instead", "note"
    ),
    # images in training
    "image_without_boxes": ProblemKind("training image without a usable box", "drop"),
    "image_too_small": ProblemKind("training image with a side < data.min_image_side", "drop"),
}

# With data.skip_unreadable_images=true these image errors become drops.
SKIPPABLE_IMAGE_PROBLEMS = ("image_missing", "image_empty", "image_undecodable")


@dataclass
class ProblemEntry:
    """Count and first examples of one kind of problem."""

    count: int = 0
    examples: list[str] = field(default_factory=list)


class ProblemLog:
    """Counts per problem kind with the first :data:`MAX_EXAMPLES` examples of each.

    Args:
        title: what was checked (e.g. ``"data.train (coco: annotations/train.json)"``).
        actions: per-kind action overrides (e.g. ``{"image_missing": "drop"}``).
    """

    def __init__(self, title: str = "", actions: dict[str, str] | None = None) -> None:
        self.title = title
        self.actions = dict(actions or {})
        self.entries: dict[str, ProblemEntry] = {}

    def action(self, kind: str) -> str:
        return self.actions.get(kind, PROBLEM_KINDS[kind].action)

    def add(self, kind: str, examples: Iterable[str] = (), count: int | None = None) -> None:
        """Records ``count`` occurrences (default: the number of examples) of ``kind``."""
        if kind not in PROBLEM_KINDS:
            raise KeyError(f"unknown problem kind {kind!r}")
        examples = list(examples)
        number = len(examples) if count is None else int(count)
        if number <= 0:
            return
        entry = self.entries.setdefault(kind, ProblemEntry())
        entry.count += number
        room = MAX_EXAMPLES - len(entry.examples)
        entry.examples.extend(examples[: max(room, 0)])

    def count(self, kind: str) -> int:
        entry = self.entries.get(kind)
        return entry.count if entry else 0

    def errors(self) -> list[str]:
        """Kinds present whose action is ``error``."""
        return [kind for kind in self.entries if self.action(kind) == "error"]

    def format_table(self, header: str | None = None) -> str:
        """The summary table: one row per kind (count, action, description), examples below it.

        ``header`` replaces the first line (default: the title).
        """
        first = self.title if header is None else header
        if not self.entries:
            return f"{first}: no problems found"
        lines = [f"{first}:", f"  {'count':>7}  {'action':<7}  problem"]
        order = list(PROBLEM_KINDS)
        for kind in sorted(self.entries, key=order.index):
            entry = self.entries[kind]
            lines.append(f"  {entry.count:>7}  {self.action(kind):<7}  {PROBLEM_KINDS[kind].description}")
            lines.extend(f"  {'':>7}  {'':<7}    e.g. {example}" for example in entry.examples)
        return "\n".join(lines)
