"""Shared ground of fedbroker: wire code, secure aggregation, registry, identities, config, audit, errors."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("fedbroker")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
