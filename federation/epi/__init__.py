"""Epidemiological statistics on released (summed) series: pure numpy, no gRPC, no store.

- :mod:`.tiers`: the official county risk tiers of February 2020 and how long a district has held its tier.
"""
