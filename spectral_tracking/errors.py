"""Errors whose message tells the user what to change; the entry points print them as one line.

`ConfigError` lives here, at the bottom of the package, so that every layer (data readers, fitting,
the run) can raise it without importing the config layer (`spectral_tracking.run.config` re-exports it).
"""


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what is expected."""
