"""``ConfigError``: a bad configuration value (exit 2); ``config.py`` re-exports it."""


class ConfigError(ValueError):
    """A bad configuration value; ``str()`` is the one-line message."""
