"""The fedbroker application: CLI, synthetic scenarios, local federation launcher, reports."""

__version__ = "0.1.0"
