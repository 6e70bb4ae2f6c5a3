"""Recombining Shamir shares in pycryptodome's GF(2^128): equal to ``Shamir.combine`` byte for byte."""

from __future__ import annotations

import secrets

import pytest
from Crypto.Protocol.SecretSharing import Shamir, _Element

from federation.errors import RoundError
from federation.secagg import shamir
from federation.secagg.keys import combine_secret, combine_secrets, split_secrets


@pytest.mark.parametrize(("threshold", "count"), [(2, 2), (2, 3), (3, 5), (5, 8), (9, 16)])
def test_combine_equals_pycryptodome_for_any_t_of_the_shares(threshold: int, count: int) -> None:
    for _ in range(5):
        secret = secrets.token_bytes(16)
        shares = Shamir.split(threshold, count, secret)
        chosen = sorted(secrets.SystemRandom().sample(shares, threshold))
        coefficients = shamir.lagrange_at_zero([index for index, _ in chosen])
        rebuilt = shamir.combine_with_indices(coefficients, [share for _, share in chosen])
        assert rebuilt == secret == Shamir.combine(chosen)


def test_field_arithmetic_equals_pycryptodome_elements() -> None:
    for _ in range(50):
        a, b = secrets.randbits(128), secrets.randbits(128) | 1
        assert shamir._multiply(a, b) == int(_Element(a) * _Element(b))
        assert shamir._inverse(b) == int(_Element(b).inverse())
        assert shamir._multiply(b, shamir._inverse(b)) == 1
    with pytest.raises(ValueError, match="zero has no inverse"):
        shamir._inverse(0)


def test_combine_of_shares_made_by_the_product_for_many_secrets_at_once() -> None:
    seeds = {f"agency-{i}": (secrets.token_bytes(16), secrets.token_bytes(32)) for i in range(6)}
    plaintexts = {owner: split_secrets(seed, key, threshold=4, count=7) for owner, (seed, key) in seeds.items()}
    responders = [7, 2, 5, 3]
    wanted = {
        (owner, part): sorted((i, plaintexts[owner][i - 1][span]) for i in responders)
        for owner in seeds
        for part, span in (("b", slice(0, 16)), ("key", slice(16, 48)))
    }
    rebuilt = combine_secrets(wanted, 4)
    assert rebuilt == {(owner, part): seeds[owner][0 if part == "b" else 1] for owner in seeds for part in ("b", "key")}
    # Secrets with different index sets in one call each get their own coefficients.
    mixed = {
        "first": wanted["agency-0", "b"],
        "other": sorted((i, plaintexts["agency-1"][i - 1][:16]) for i in (1, 4, 6, 7)),
    }
    assert combine_secrets(mixed, 4) == {"first": seeds["agency-0"][0], "other": seeds["agency-1"][0]}


def test_refusals() -> None:
    shares = [(1, bytes(16)), (2, bytes(16))]
    with pytest.raises(RoundError, match="same index"):
        combine_secret([(1, bytes(16)), (1, bytes(16))], 2)
    with pytest.raises(RoundError, match="unusable indices"):
        combine_secret([(0, bytes(16)), (2, bytes(16))], 2)
    with pytest.raises(RoundError, match="all be 16 or all be 32 bytes"):
        combine_secret([(1, bytes(16)), (2, bytes(15))], 2)
    with pytest.raises(RoundError, match="1 shares cannot rebuild"):
        combine_secret(shares[:1], 2)
    with pytest.raises(ValueError, match="distinct and non-zero"):
        shamir.lagrange_at_zero([3, 3])
