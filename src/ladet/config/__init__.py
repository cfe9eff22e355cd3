"""Typed configuration: the dataclass schema and the strict YAML loader."""

from ladet.config.loader import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    dump_config,
    find_config_file,
    load_config,
    validate_config,
)
from ladet.config.schema import Config

__all__ = [
    "Config",
    "ConfigError",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "dump_config",
    "find_config_file",
    "load_config",
    "validate_config",
]
