"""Exceptions that carry a message a user can act on (what is wrong, and how to fix it)."""

from __future__ import annotations


class XgenError(Exception):
    """Base class of every error xgen raises on purpose."""


class ConfigError(XgenError, ValueError):
    """A configuration value is invalid. The message names the config key and the fix."""


class DataError(XgenError, OSError):
    """Dataset files are missing, unreadable or corrupt. The message lists where xgen looked."""


def check(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError(`key`: message) unless `condition` holds (never a bare assert on user input)."""
    if not condition:
        raise ConfigError(f"{key}: {message}")
