"""Distributed differential privacy: the exact discrete Gaussian sampler, zCDP accounting, the budget ledger.

Pure code with no gRPC import. Randomness comes only from the operating system's CSPRNG (``secrets``); no module
here may import ``random`` or ``numpy.random`` (``tests/test_privacy_sampler.py`` checks the imports).
"""
