"""Wait for a condition instead of sleeping for it: poll until it holds, fail after a generous bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], *, timeout_s: float = 120.0, every_s: float = 0.05) -> T:
    """Poll ``condition`` until it returns something other than None or False, and return that; fail the test
    with AssertionError after ``timeout_s`` seconds (a bound for a loaded machine, not a timing claim)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s:.0f} s")
        time.sleep(every_s)
