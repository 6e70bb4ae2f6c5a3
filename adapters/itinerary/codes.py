"""One-time codes for the itinerary service: issue, rate-limit, check. Pure state in memory; no gRPC, no store.

Every well-formed number gets the same treatment whether or not it belongs to a subscriber: a code is drawn and
kept for it, the hourly limit counts it, wrong tries burn it. Only the SMS is sent for subscribers alone (the
caller decides that), so no answer and no later refusal can tell a subscriber from a stranger.

- a code is 6 decimal digits from the OS CSPRNG (``secrets``), valid for ``ttl_s`` (300 s) after it was issued;
- a new code replaces the number's previous one; a code is used at most once (a correct check consumes it);
- at most ``max_requests`` (3) codes per number in any ``window_s`` (3600 s);
- at most ``max_wrong`` (5) wrong tries per code: the fifth burns it, and a sixth try fails even if right;
- the check compares with :func:`hmac.compare_digest`, whose time does not depend on where the codes differ.

Times come from ``clock`` (seconds, monotonic), so expiry is testable without waiting. Numbers are kept only in
memory and only as long as a limit needs them; a restart forgets every code (they all become invalid) and every
counter.
"""

from __future__ import annotations

import collections
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from federation.errors import CodeRejected, RateLimited

__all__ = ["CODE_DIGITS", "CodeBook"]

CODE_DIGITS = 6


@dataclass
class _Pending:
    code: str
    issued_at: float
    wrong_tries: int = 0


class CodeBook:
    """Codes and request counters per number. Thread-safe; bounded to ``max_numbers`` numbers at a time."""

    def __init__(
        self,
        *,
        ttl_s: float = 300.0,
        max_requests: int = 3,
        window_s: float = 3600.0,
        max_wrong: int = 5,
        max_numbers: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_requests = max_requests
        self.window_s = window_s
        self.max_wrong = max_wrong
        self.max_numbers = max_numbers
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._requests: dict[str, collections.deque[float]] = {}
        self._pruned_at = float("-inf")

    def issue(self, msisdn: str) -> str:
        """A fresh code for ``msisdn`` (replacing any earlier one); RateLimited on the (max_requests + 1)-th
        request within window_s, or when max_numbers numbers are already being tracked."""
        now = self._clock()
        with self._lock:
            self._forget_old(now)
            times = self._requests.get(msisdn)
            if times is None:
                if len(self._requests) >= self.max_numbers:
                    raise RateLimited(
                        "the itinerary service is busy: too many numbers asked in the last hour; retry later"
                    )
                times = self._requests[msisdn] = collections.deque()
            if len(times) >= self.max_requests:
                wait_min = max(1, int((times[0] + self.window_s - now) // 60) + 1)
                raise RateLimited(
                    f"at most {self.max_requests} codes per number per hour: request another in {wait_min} min"
                )
            times.append(now)
            code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
            self._pending[msisdn] = _Pending(code, now)
            return code

    def requests_left(self, msisdn: str) -> int:
        """How many more codes ``msisdn`` may be sent within the current hour."""
        now = self._clock()
        with self._lock:
            recent = sum(1 for t in self._requests.get(msisdn, ()) if now - t < self.window_s)
            return max(0, self.max_requests - recent)

    def redeem(self, msisdn: str, code: str) -> None:
        """Consume ``msisdn``'s code if ``code`` is it and still valid; CodeRejected saying what to do otherwise.

        The messages depend only on this book's state for the number, which is the same for subscribers and
        strangers."""
        now = self._clock()
        with self._lock:
            pending = self._pending.get(msisdn)
            if pending is not None and now - pending.issued_at > self.ttl_s:
                del self._pending[msisdn]
                pending = None
            if pending is None:
                raise CodeRejected(
                    "no valid code for this number: it expired, was used or was wrong too often; request a new one"
                )
            if hmac.compare_digest(pending.code.encode("ascii"), code.encode("ascii")):
                del self._pending[msisdn]
                return
            pending.wrong_tries += 1
            left = self.max_wrong - pending.wrong_tries
            if left <= 0:
                del self._pending[msisdn]
                raise CodeRejected("wrong code, and no tries are left for it: request a new code")
            raise CodeRejected(f"wrong code: {left} tr{'y' if left == 1 else 'ies'} left for this code")

    def _forget_old(self, now: float) -> None:
        """Drop request times older than the window and codes past their expiry; at most once a second unless
        the book is full, so a request costs O(1) amortised."""
        if now - self._pruned_at < 1.0 and len(self._requests) < self.max_numbers:
            return
        self._pruned_at = now
        for msisdn in list(self._requests):
            times = self._requests[msisdn]
            while times and now - times[0] >= self.window_s:
                times.popleft()
            if not times:
                del self._requests[msisdn]
        for msisdn in [m for m, p in self._pending.items() if now - p.issued_at > self.ttl_s]:
            del self._pending[msisdn]
