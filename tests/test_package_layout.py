"""The package is importable only as the installed one: the README's Python snippet runs from the
parent folder of a clone named ``ladet`` (which Python would otherwise import as an empty
namespace package: "cannot import name 'Predictor' from 'ladet' (unknown location)").

Passes once the package lives under ``src/`` (``src/ladet``) and is installed from there
(``pip install -e .``): the ``src/`` layout is what this test checks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from ladet.config.loader import load_config
from ladet.methods import build_evaluation_detector

REPOSITORY = Path(__file__).resolve().parents[1]
DEMO_CONFIG = "configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml"
DEMO_CHECKPOINT = "runs/demo/small/baseline_seed0/latest.pth"
DEMO_IMAGE = "data/builtin_small/val/000001.jpg"


def readme_python_snippet() -> str:
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (snippet,) = [block for block in blocks if "from ladet import Predictor" in block]
    return snippet


def test_readme_snippet_runs_from_the_parent_folder_of_a_clone(tmp_path: Path) -> None:
    snippet = readme_python_snippet()
    for path in (DEMO_CONFIG, DEMO_CHECKPOINT, DEMO_IMAGE):
        assert path in snippet, path
    # the demo's outputs, stood in for by an untrained student and one image
    torch.manual_seed(0)
    detector = build_evaluation_detector(load_config(REPOSITORY / DEMO_CONFIG))
    checkpoint = tmp_path / "student.pth"
    torch.save(
        {"model": {f"detector.{key}": value for key, value in detector.state_dict().items()}}, checkpoint
    )
    image = tmp_path / "image.jpg"
    Image.new("RGB", (96, 80), (120, 60, 30)).save(image)
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "ladet").symlink_to(REPOSITORY, target_is_directory=True)  # a clone named ladet
    snippet = (
        snippet.replace(DEMO_CONFIG, f"ladet/{DEMO_CONFIG}")
        .replace(DEMO_CHECKPOINT, str(checkpoint))
        .replace(DEMO_IMAGE, str(image))
    )
    result = subprocess.run([sys.executable, "-c", snippet], cwd=parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith("[") and result.stdout.strip().endswith("]")
