"""Worker of ``test_distributed_resume.py``, launched with ``torchrun --nproc_per_node=2``.

One process group runs every scenario in turn, each rank with ITS OWN work directory
(``ROOT/<scenario>/rank<R>``) as on nodes without a shared file system:

* ``full``: an uninterrupted 2-epoch run (shared directory), the reference;
* ``missing``: rank 0 has ``latest.pth``, rank 1 has none;
* ``different``: rank 1's ``latest.pth`` holds another checkpoint;
* ``fresh_on_rank0``: rank 0 has no ``latest.pth``, rank 1 has one;
* ``copies``: both ranks hold identical copies of the epoch-1 checkpoint (and only rank 0 the
  stored teacher evaluation): the resumed run must end with the reference's weights on both ranks.

Each rank writes ``ROOT/result_rank<R>.json``: scenario -> the CheckpointError text, or null.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path

import torch

# torchrun runs this file as a script, so its own folder (tests/) is first on the import path.
from engine_fakes import BUILT_METHODS, TinyDetector, TinyMethod, fake_components, tiny_config

from ladet.checkpoint_io import CheckpointError
from ladet.engine import TrainingComponents, train
from ladet.engine.distributed import barrier, init_distributed, shutdown_distributed


def _method_with_teacher() -> TinyMethod:
    """A TinyMethod whose teacher, as in ladet's methods, is outside the module tree (DDP-safe)."""
    method = TinyMethod()
    object.__setattr__(method, "_teacher", TinyDetector().eval())
    BUILT_METHODS.append(method)
    return method


def _components() -> TrainingComponents:
    return TrainingComponents(
        **{**fake_components().__dict__, "build_method": lambda config, device: _method_with_teacher()}
    )


def main() -> None:
    root = Path(sys.argv[1])
    torch.set_num_threads(1)
    context = init_distributed("cpu")
    rank = context.rank
    train(tiny_config(epochs=2), root / "full", components=_components())
    reference = {key: value.clone() for key, value in BUILT_METHODS[-1].state_dict().items()}

    if rank == 0:  # one file system here: rank 0 lays out every rank's "local disk"
        epoch_1, epoch_2 = root / "full" / "epoch_1.pth", root / "full" / "latest.pth"
        layout = {
            "missing": [epoch_1, None],
            "different": [epoch_1, epoch_2],
            "fresh_on_rank0": [None, epoch_1],
            "copies": [epoch_1, epoch_1],
        }
        for scenario, sources in layout.items():
            for index, source in enumerate(sources):
                directory = root / scenario / f"rank{index}"
                directory.mkdir(parents=True)
                if source is not None:
                    shutil.copyfile(source, directory / "latest.pth")
        # only rank 0's disk holds the stored teacher evaluation: every rank must use it, none
        # may evaluate the teacher alone (its collectives would meet no partner)
        shutil.copyfile(
            root / "full" / "teacher_metrics.json", root / "copies" / "rank0" / "teacher_metrics.json"
        )
    barrier()

    results: dict[str, str | None] = {}
    for scenario in ("missing", "different", "fresh_on_rank0", "copies"):
        try:
            train(
                tiny_config(epochs=2),
                root / scenario / f"rank{rank}",
                "auto",
                components=_components(),
            )
            results[scenario] = None
        except CheckpointError as error:
            results[scenario] = str(error)
    resumed = BUILT_METHODS[-1].state_dict()
    results["copies_equal_reference"] = str(all(torch.equal(resumed[k], reference[k]) for k in reference))
    results["host"] = socket.gethostname()
    (root / f"result_rank{rank}.json").write_text(json.dumps(results), encoding="utf-8")
    shutdown_distributed()


if __name__ == "__main__":
    main()
