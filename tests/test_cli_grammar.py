"""One CLI grammar: key=value overrides everywhere (``--set`` deprecated), global options on
either side of the subcommand, ``--version``, help for every argument, one example per command."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ladet.cli import build_parser, looks_like_override, parse_arguments
from ladet.config.loader import ConfigError, load_config

REPOSITORY = Path(__file__).resolve().parents[1]
DEMO_STUDENT = REPOSITORY / "configs/demo/paa_r18_fpn_1x8_builtin_demo.yaml"
PAA_1X = REPOSITORY / "configs/paa/paa_r50_fpn_1x_coco.yaml"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _parse(argv: list[str]) -> argparse.Namespace:
    return parse_arguments(build_parser(), argv)


def test_version_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ladet", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().startswith("ladet 0.")


@pytest.mark.parametrize(
    "argv",
    [
        ["--debug", "print-config", "c.yaml"],
        ["print-config", "--debug", "c.yaml"],
        ["print-config", "c.yaml", "--debug"],
    ],
)
def test_debug_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert _parse(argv).debug is True


def test_no_debug_by_default() -> None:
    assert _parse(["print-config", "c.yaml"]).debug is False


def test_overrides_anywhere_after_the_config() -> None:
    arguments = _parse(["train", "c.yaml", "a.b=1", "--work-dir", "runs/x", "c.d=[1,2]", "--seed", "3"])
    assert arguments.overrides == ["a.b=1", "c.d=[1,2]"] and arguments.work_dir == "runs/x"


def test_predict_takes_overrides_among_images(tmp_path: Path) -> None:
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"")
    odd = tmp_path / "a=b.jpg"  # an existing file whose name looks like an override stays an image
    odd.write_bytes(b"")
    arguments = _parse(
        ["predict", "c.yaml", "--checkpoint", "k.pth", str(image), "model.test.score_threshold=0.1"]
        + [str(odd), "--out", "o", "seed=2"]
    )
    assert arguments.inputs == [str(image), str(odd)]
    assert arguments.overrides == ["model.test.score_threshold=0.1", "seed=2"]
    assert looks_like_override("model.test.bogus=1") and not looks_like_override(str(odd))


def test_set_is_a_deprecated_alias(tmp_path: Path, capsys) -> None:
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"")
    arguments = _parse(
        ["visualize-assign", "c.yaml", "--checkpoint", "k.pth", "--set", "seed=1", str(image), "--out", "o"]
    )
    assert arguments.inputs == [str(image)] and arguments.overrides == ["seed=1"]
    assert "--set is deprecated" in capsys.readouterr().err
    arguments = _parse(["export", "c.yaml", "--checkpoint", "k", "--out", "o", "--set", "seed=1"])
    assert arguments.overrides == ["seed=1"]


def test_predict_without_images_is_an_error(capsys) -> None:
    with pytest.raises(SystemExit):
        _parse(["predict", "c.yaml", "--checkpoint", "k", "seed=1", "--out", "o"])
    assert "at least one image" in capsys.readouterr().err


def test_every_argument_has_help_and_every_command_a_parsable_example() -> None:
    parser = build_parser()
    for name, subparser in _subparsers(parser).items():
        for action in subparser._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
        assert subparser.epilog and "example:" in subparser.epilog, name
        example = subparser.epilog.split("example:\n", 1)[1].replace("\\\n", " ").splitlines()[0]
        words = shlex.split(example)
        assert words[:2] == ["ladet", name], example
        if name != "reproduce":
            parsed = parse_arguments(build_parser(), words[1:])
            assert parsed.command == name
    for name in ("test", "export", "predict", "visualize-assign"):
        helps = " ".join(action.help or "" for action in _subparsers(parser)[name]._actions)
        assert "train.epochs" not in helps, name  # a training key is no example for these


def test_epochs_alone_rescales_lr_steps(capsys) -> None:
    config = load_config(DEMO_STUDENT, ["train.epochs=1"])  # the demo base: 12 epochs, [8, 11]
    assert config.train.epochs == 1 and config.train.lr_steps == []
    assert "lr_steps [8, 11] (for 12 epochs) become []" in capsys.readouterr().err
    assert load_config(PAA_1X, ["train.epochs=24"]).train.lr_steps == [16, 22]  # the 2x schedule
    assert load_config(PAA_1X, ["train.epochs=6"]).train.lr_steps == [4, 5]
    kept = load_config(PAA_1X, ["train.epochs=6", "train.lr_steps=[2]"])
    assert kept.train.lr_steps == [2]  # given explicitly: untouched
    assert load_config(PAA_1X).train.lr_steps == [8, 11]


def test_misspelled_override_section_is_blamed_on_the_override() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO_STUDENT, ["trian.epochs=3"])
    message = str(caught.value)
    assert message.startswith("override 'trian.epochs=3': unknown key 'trian'"), message
    assert "did you mean 'train'" in message


def test_make_dataset_ends_with_what_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "ladet", "make-dataset", "--out", str(out), "--num-train", "2"]
        + ["--num-val", "1", "--min-side", "64", "--max-side", "64"],
        capture_output=True,
        text=True,
        check=True,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(
        f"ladet make-dataset: wrote 2 train and 1 val images with COCO annotations to {out}"
    )
    assert last.endswith(" s)")
