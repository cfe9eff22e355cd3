"""The single error type of the configuration system."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration file, override or value is invalid; the message names the key and source."""
