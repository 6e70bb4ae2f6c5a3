"""Epidemiological statistics on released (summed) series: pure numpy, no gRPC, no store.

- :mod:`.tiers`: the official county risk tiers of February 2020 and how long a district has held its tier;
- :mod:`.rt`: the reproduction number of Cori et al. 2013 with the imported/local split of Thompson et al. 2019,
  as R EpiEstim 2.2-4 ``estimate_R(method = "parametric_si")`` computes it;
- :mod:`.growth`: the exponential growth rate by log-linear least squares, as R ``incidence::fit``;
- :mod:`.ears`: the EARS C1/C2/C3 aberration statistics, as R ``surveillance::earsC`` 1.20;
- :mod:`.special`: the incomplete gamma function, the gamma, t and normal quantiles they need.

``tests/fixtures/epi/make_fixtures.R`` produced the reference values ``tests/test_epi_reference.py`` compares
every function with.
"""
