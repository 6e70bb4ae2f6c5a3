"""The broker node: drives secure-aggregation rounds, joins, applies disclosure control, answers coordinators."""
