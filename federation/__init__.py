"""Shared ground of fedbroker: wire code, secure aggregation, registry, identities, config, audit, errors."""
