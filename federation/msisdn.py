"""Subscriber numbers (MSISDN) in E.164: checking one and masking it for display.

A number is ``+`` and 7 to 15 digits, the first not 0 (ITU-T E.164), e.g. ``+8613800000000``. The masked form
shows enough for a person to recognise their own number and no more: for a Chinese mobile number the country
code, the first three and the last four digits (``+86 138****0000``), for any other the first four and the last
four characters with the middle starred.
"""

from __future__ import annotations

import re

from federation.errors import InvalidQuery

__all__ = ["E164_PATTERN", "check_msisdn", "mask_msisdn"]

E164_PATTERN = r"\+[1-9][0-9]{6,14}"
_E164 = re.compile(E164_PATTERN)


def check_msisdn(value: str) -> str:
    """``value`` if it is an E.164 number; InvalidQuery saying how to write one otherwise (the message never
    repeats the value: it may be a person's number)."""
    if not isinstance(value, str) or _E164.fullmatch(value) is None:
        raise InvalidQuery("the number must be in E.164 form: + then 7 to 15 digits, like +8613800000000")
    return value


def mask_msisdn(msisdn: str) -> str:
    """The display form of an E.164 number: ``+86 138****0000`` for a Chinese mobile number."""
    check_msisdn(msisdn)
    if msisdn.startswith("+86") and len(msisdn) == 14:
        national = msisdn[3:]
        return f"+86 {national[:3]}****{national[-4:]}"
    return msisdn[:4] + "*" * (len(msisdn) - 8) + msisdn[-4:]
