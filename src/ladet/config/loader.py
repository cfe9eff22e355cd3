"""Strict YAML configuration loading: ``_base_`` inheritance, dotted overrides, typed validation.

A config file is a YAML mapping whose keys mirror the dataclass tree of ``ladet.config.schema``.
Only the values that differ from the schema defaults need to be written.

Merging rules (``_base_`` and overrides):

* ``_base_: path`` or ``_base_: [path, ...]`` (relative to the file that names them) are loaded
  recursively and merged in order, later bases overriding earlier ones; the file itself
  overrides all of its bases.
* Mappings are merged key by key (deep merge); every other value, lists included, replaces the
  inherited value whole.
* ``_delete_: true`` inside a mapping replaces the inherited subtree instead of merging into it.
* Dotted overrides such as ``train.lr=0.005`` or ``train.lr_steps=[16,22]`` are applied last;
  their values are parsed as YAML (``null`` -> None, ``[1,2]`` -> list, ``1e-3`` -> float).

Validation is strict: an unknown key, a value of the wrong type, or a failed semantic check raises
:class:`ConfigError` naming the full dotted key, the file (or override) it came from, and for
unknown keys the nearest valid key.

Example::

    config = load_config("configs/lad/lad_r50-paa-r101_fpn_2x8_coco_1x.yaml", ["train.lr=0.005"])
    dump_config(config, "work_dir/config.yaml")   # loads back to an equal Config
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ladet.config.errors import ConfigError
from ladet.config.schema import Config, TrainConfig
from ladet.config.validation import validate_config

__all__ = [
    "ConfigError",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "dump_config",
    "find_config_file",
    "load_config",
    "merge_config_dicts",
    "parse_overrides",
    "validate_config",
]

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
# the checkout holding configs/ (the same with the package at the root or under src/)
REPOSITORY_ROOT = next(
    (folder for folder in Path(__file__).resolve().parents if (folder / "configs").is_dir()),
    Path(__file__).resolve().parents[2],
)

# Provenance: dotted key -> where its value was written (a file path or an override string).
Provenance = dict[str, str]


# ------------------------------------------------------------------------------------- YAML I/O
class _ConfigYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus floats written without a dot (``1e-4``), as YAML 1.2 reads them."""


_FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
# Replace the float resolver of the safe loader in our subclass only.
_ConfigYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigYamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_PATTERN, list("-+0123456789."))


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_ConfigYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: invalid YAML: {error}") from error


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    except UnicodeDecodeError as error:
        from ladet.file_kinds import binary_text_error

        raise ConfigError(binary_text_error(path, "config file", "a YAML text file")) from error
    data = _parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config file must hold a mapping at top level, got {type(data).__name__}"
        )
    return data


def find_config_file(path: str | Path) -> Path:
    """Locate a referenced config file (teacher, second network).

    A relative path is tried against the current directory first, then against the repository
    root (so ``configs/paa/paa_r101_fpn_1x_coco.yaml`` works from any directory of a checkout).
    """
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    from_root = REPOSITORY_ROOT / candidate
    return from_root if from_root.exists() else candidate


# --------------------------------------------------------------------------------------- merging
def merge_config_dicts(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (mappings merge, anything else replaces).

    A mapping in ``override`` holding ``_delete_: true`` replaces the inherited subtree whole.
    Neither input is modified.
    """
    result: dict[str, Any] = {key: _copy_tree(value) for key, value in base.items()}
    for key, value in override.items():
        if key == DELETE_KEY:
            continue
        if isinstance(value, Mapping):
            if value.get(DELETE_KEY, False) is True or not isinstance(result.get(key), Mapping):
                result[key] = _strip_delete(value)
            else:
                result[key] = merge_config_dicts(result[key], value)
        else:
            result[key] = _copy_tree(value)
    return result


def _copy_tree(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _copy_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_tree(item) for item in value]
    return value


def _strip_delete(value: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a mapping, dropping ``_delete_`` markers at every depth."""
    return {
        key: _strip_delete(item) if isinstance(item, Mapping) else _copy_tree(item)
        for key, item in value.items()
        if key != DELETE_KEY
    }


def _record_provenance(
    data: Mapping[str, Any], source: str, provenance: Provenance, prefix: str = ""
) -> None:
    for key, value in data.items():
        if key in (BASE_KEY, DELETE_KEY):
            continue
        dotted = f"{prefix}{key}"
        provenance[dotted] = source
        if isinstance(value, Mapping):
            _record_provenance(value, source, provenance, dotted + ".")


def _load_file_tree(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], Provenance]:
    """Read ``path`` and its ``_base_`` files recursively; return the merged mapping and provenance."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(item) for item in (*chain, resolved))
        raise ConfigError(f"circular _base_ inheritance: {cycle}")
    data = _read_yaml_mapping(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(item, str) for item in bases):
        raise ConfigError(f"{path}: '{BASE_KEY}' must be a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    provenance: Provenance = {}
    for base in bases:
        base_path = Path(os.path.normpath(path.parent / base))
        if not base_path.is_file():
            raise ConfigError(f"{path}: _base_ file '{base}' not found (looked for {base_path})")
        base_data, base_provenance = _load_file_tree(base_path, (*chain, resolved))
        merged = merge_config_dicts(merged, base_data)
        provenance.update(base_provenance)
    merged = merge_config_dicts(merged, data)
    _record_provenance(data, str(path), provenance)
    return merged, provenance


# ------------------------------------------------------------------------------------- overrides
def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, Any]]:
    """Parse ``key.sub=value`` strings into (dotted key, YAML-parsed value) pairs.

    >>> parse_overrides(["train.lr=0.005", "model.backbone.weights=null", "train.lr_steps=[16,22]"])
    [('train.lr', 0.005), ('model.backbone.weights', None), ('train.lr_steps', [16, 22])]
    """
    parsed: list[tuple[str, Any]] = []
    for override in overrides:
        key, separator, text = override.partition("=")
        key = key.strip()
        if not separator or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override '{override}' must look like 'section.key=value'")
        value = _parse_yaml(text, f"override '{override}'") if text.strip() else ""
        parsed.append((key, value))
    return parsed


def _apply_overrides(
    data: dict[str, Any], overrides: Iterable[str], provenance: Provenance
) -> dict[str, Any]:
    for (key, value), text in zip(parse_overrides(overrides), overrides, strict=True):
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        data = merge_config_dicts(data, nested)
        source = f"override '{text}'"
        parts = key.split(".")
        for length in range(1, len(parts)):  # a section the override created (a typo) is the override's
            provenance.setdefault(".".join(parts[:length]), source)
        provenance[key] = source
        if isinstance(value, Mapping):
            _record_provenance(value, source, provenance, key + ".")
    return data


def rescale_lr_steps(
    file_data: Mapping[str, Any], data: dict[str, Any], override_keys: Sequence[str], provenance: Provenance
) -> dict[str, Any]:
    """``train.epochs=N`` given without ``train.lr_steps``: the file's steps are rescaled to N epochs.

    Each step s of an E-epoch schedule becomes floor(s * N / E); steps outside [1, N) are dropped
    (``train.epochs=1`` gives ``[]``, the 1x schedule's ``[8, 11]`` of 12 epochs gives ``[16, 22]``
    for 24). Prints one note to stderr saying what was changed.
    """
    if "train.epochs" not in override_keys or "train.lr_steps" in override_keys:
        return data
    defaults = TrainConfig()
    old_train, new_train = file_data.get("train", {}) or {}, data.get("train", {}) or {}
    old_epochs = old_train.get("epochs", defaults.epochs)
    new_epochs = new_train.get("epochs")
    old_steps = old_train.get("lr_steps", defaults.lr_steps)
    if not (isinstance(old_epochs, int) and isinstance(new_epochs, int) and isinstance(old_steps, list)):
        return data  # wrong types: validation reports them
    if not all(isinstance(step, int) for step in old_steps) or min(old_epochs, new_epochs) <= 0:
        return data
    if new_epochs == old_epochs:
        return data
    steps = sorted({step * new_epochs // old_epochs for step in old_steps} & set(range(1, new_epochs)))
    if steps == old_steps:
        return data
    print(
        f"ladet: note: train.epochs={new_epochs} without train.lr_steps: the config's lr_steps "
        f"{old_steps} (for {old_epochs} epochs) become {steps} (give train.lr_steps=[...] to choose)",
        file=sys.stderr,
    )
    provenance["train.lr_steps"] = f"rescaled to train.epochs={new_epochs}"
    return merge_config_dicts(data, {"train": {"lr_steps": steps}})


# ------------------------------------------------------------------------------ typed validation
def _describe_type(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " | ".join(_describe_type(item) for item in typing.get_args(annotation))
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return f"list[{_describe_type(item)}]"
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return f"mapping ({annotation.__name__})"
    return getattr(annotation, "__name__", str(annotation))


def _describe_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "mapping"
    return f"{type(value).__name__} {value!r}"


class _Builder:
    """Turns a plain mapping into the dataclass tree, checking keys and types."""

    def __init__(self, provenance: Provenance, default_source: str) -> None:
        self.provenance = provenance
        self.default_source = default_source

    def source_of(self, dotted_key: str) -> str:
        parts = dotted_key.split(".")
        for length in range(len(parts), 0, -1):  # the key itself, else its closest parent
            source = self.provenance.get(".".join(parts[:length]))
            if source is not None:
                return source
        return self.default_source

    def error(self, dotted_key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source_of(dotted_key)}: key '{dotted_key}': {message}")

    def build_dataclass(self, cls: type, data: Any, default: Any, prefix: str) -> Any:
        """Build ``cls`` from ``data`` on top of ``default`` (an instance of ``cls``)."""
        if not isinstance(data, Mapping):
            raise self.error(
                prefix.rstrip(".") or "<root>",
                f"expected a mapping ({cls.__name__}), got {_describe_value(data)}",
            )
        hints = typing.get_type_hints(cls)
        names = [item.name for item in dataclasses.fields(cls)]
        values: dict[str, Any] = {}
        for key, value in data.items():
            dotted = f"{prefix}{key}"
            if not isinstance(key, str) or key not in hints:
                valid = [f"{prefix}{name}" for name in names]
                nearest = difflib.get_close_matches(dotted, valid, n=1, cutoff=0.5)
                hint = f"; did you mean '{nearest[0]}'?" if nearest else ""
                raise ConfigError(
                    f"{self.source_of(dotted)}: unknown key '{dotted}'{hint} "
                    f"(valid keys here: {', '.join(names)})"
                )
            values[key] = self.build_value(hints[key], value, getattr(default, key), dotted)
        return dataclasses.replace(default, **values)

    def build_value(self, annotation: Any, value: Any, default: Any, dotted: str) -> Any:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            options = typing.get_args(annotation)
            if value is None:
                if type(None) in options:
                    return None
                raise self.error(dotted, f"expected {_describe_type(annotation)}, got null")
            non_null = [item for item in options if item is not type(None)]
            if len(non_null) != 1:
                raise TypeError(f"unsupported schema annotation {annotation} at {dotted}")
            return self.build_value(non_null[0], value, default, dotted)
        if value is None:
            raise self.error(dotted, f"expected {_describe_type(annotation)}, got null (not optional here)")
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            base = default if isinstance(default, annotation) else annotation()
            return self.build_dataclass(annotation, value, base, dotted + ".")
        if origin is list:
            (item_type,) = typing.get_args(annotation)
            if not isinstance(value, list):
                raise self.error(
                    dotted, f"expected {_describe_type(annotation)}, got {_describe_value(value)}"
                )
            return [
                self.build_value(item_type, item, None, f"{dotted}[{index}]")
                for index, item in enumerate(value)
            ]
        if origin is typing.Literal:  # a choice field: the type here, membership in validate_config
            kinds = list(dict.fromkeys(type(option) for option in typing.get_args(annotation)))
            if len(kinds) > 1:  # e.g. train.amp: false | true | "float16" | "bfloat16"
                return self.build_scalar_alternatives(kinds, value, dotted)
            return self.build_scalar(kinds[0], value, dotted)
        return self.build_scalar(annotation, value, dotted)

    def build_scalar_alternatives(self, options: list[type], value: Any, dotted: str) -> Any:
        """A choice over several scalar types (``bool | str``): the first type the value has."""
        for option in options:
            try:
                return self.build_scalar(option, value, dotted)
            except ConfigError:
                continue
        expected = " | ".join(_describe_type(option) for option in options)
        raise self.error(dotted, f"expected {expected}, got {_describe_value(value)}")

    def build_scalar(self, annotation: Any, value: Any, dotted: str) -> Any:
        expected = _describe_type(annotation)
        if annotation is bool:
            ok = isinstance(value, bool)
        elif annotation is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif annotation is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif annotation is str:
            ok = isinstance(value, str)
        else:
            raise TypeError(f"unsupported schema annotation {annotation} at {dotted}")
        if not ok:
            raise self.error(dotted, f"expected {expected}, got {_describe_value(value)}")
        return value


# ---------------------------------------------------------------------------------- public API
def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a :class:`Config` from a plain mapping (e.g. the one stored in a checkpoint).

    Missing keys take the schema defaults; unknown keys and wrong types raise :class:`ConfigError`.
    """
    config = _Builder({}, source).build_dataclass(Config, data, Config(), "")
    validate_config(config, source)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as plain nested dicts/lists/scalars (YAML- and ``torch.save``-friendly)."""
    return dataclasses.asdict(config)


class _ConfigYamlDumper(yaml.SafeDumper):
    """Block-style mappings (one key per line) with short flow-style lists (``[8, 16, 32]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_ConfigYamlDumper.add_representer(list, _represent_list)
# The dumper quotes a string when the loader would read it as something else: give it the
# loader's resolvers so that e.g. the string "1e3" is written quoted.
_ConfigYamlDumper.yaml_implicit_resolvers = _ConfigYamlLoader.yaml_implicit_resolvers


def config_to_yaml(config: Config) -> str:
    """The config as YAML text (the schema's key order, one key per line)."""
    return yaml.dump(
        config_to_dict(config), Dumper=_ConfigYamlDumper, sort_keys=False, default_flow_style=False, width=110
    )


def dump_config(config: Config, path: str | Path) -> None:
    """Write ``config`` as YAML; :func:`load_config` on the file gives back an equal Config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_to_yaml(config), encoding="utf-8")


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML config with its ``_base_`` files, apply dotted ``overrides``, validate strictly.

    Args:
        path: the config file.
        overrides: strings ``"dotted.key=value"``; values are parsed as YAML.

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type, or a failed semantic check.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data, provenance = _load_file_tree(path, ())
    overrides = list(overrides)
    file_data = data
    data = _apply_overrides(data, overrides, provenance)
    data = rescale_lr_steps(file_data, data, [key for key, _ in parse_overrides(overrides)], provenance)
    config = _Builder(provenance, str(path)).build_dataclass(Config, data, Config(), "")
    source = str(path) + (f" (with overrides {overrides})" if overrides else "")
    validate_config(config, source, provenance)
    return config
