"""``ConfigError``: a bad configuration value (exit 2); ``config.py`` re-exports it."""


class ConfigError(ValueError):
    """A bad configuration value; ``str()`` is the one-line message."""


def in_file(exc: ConfigError, key: str, path: str | None, file_keys: tuple[str, ...]) -> ConfigError:
    """``exc``, as ``config file PATH: ...`` when ``key``'s value came from the TOML file at
    ``path`` (``file_keys``: the keys whose value is the file's; cli.gather)."""
    return ConfigError(f"config file {path}: {exc}") if path and key in file_keys else exc
