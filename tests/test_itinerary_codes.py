"""One-time codes: expiry, single use, wrong tries, the hourly limit, all on an injected clock (no sleeps)."""

from __future__ import annotations

import pytest

from adapters.itinerary.codes import CodeBook
from federation.errors import CodeRejected, RateLimited

NUMBER = "+8613800000001"
OTHER = "+8613800000002"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(clock: Clock) -> CodeBook:
    return CodeBook(clock=clock)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_a_code_is_six_digits_and_redeems_once(book: CodeBook) -> None:
    code = book.issue(NUMBER)
    assert len(code) == 6 and code.isdigit()
    book.redeem(NUMBER, code)
    with pytest.raises(CodeRejected, match="no valid code"):
        book.redeem(NUMBER, code)


def test_a_code_expires_after_five_minutes(book: CodeBook, clock: Clock) -> None:
    code = book.issue(NUMBER)
    clock.now += 300.0
    book.redeem(NUMBER, code)  # still valid at exactly 5 minutes
    code = book.issue(NUMBER)
    clock.now += 300.001
    with pytest.raises(CodeRejected, match="no valid code"):
        book.redeem(NUMBER, code)


def test_five_wrong_tries_burn_the_code(book: CodeBook) -> None:
    code = book.issue(NUMBER)
    for left in (4, 3, 2, 1):
        with pytest.raises(CodeRejected, match=f"wrong code: {left} tr"):
            book.redeem(NUMBER, wrong(code))
    with pytest.raises(CodeRejected, match="no tries are left"):
        book.redeem(NUMBER, wrong(code))
    with pytest.raises(CodeRejected, match="no valid code"):
        book.redeem(NUMBER, code)  # the sixth try fails although it is the right code


def test_four_wrong_tries_still_leave_the_right_code(book: CodeBook) -> None:
    code = book.issue(NUMBER)
    for _ in range(4):
        with pytest.raises(CodeRejected):
            book.redeem(NUMBER, wrong(code))
    book.redeem(NUMBER, code)


def test_a_new_code_replaces_the_old_one(book: CodeBook) -> None:
    first = book.issue(NUMBER)
    second = book.issue(NUMBER)
    if first != second:
        with pytest.raises(CodeRejected):
            book.redeem(NUMBER, first)
    book.redeem(NUMBER, second)


def test_three_requests_per_number_per_hour(book: CodeBook, clock: Clock) -> None:
    for _ in range(3):
        book.issue(NUMBER)
        clock.now += 60
    assert book.requests_left(NUMBER) == 0
    with pytest.raises(RateLimited, match="at most 3 codes per number per hour"):
        book.issue(NUMBER)
    book.issue(OTHER)  # the limit is per number
    clock.now = 1000.0 + 3600.0  # the first request leaves the window
    book.issue(NUMBER)
    with pytest.raises(RateLimited):
        book.issue(NUMBER)


def test_refused_requests_do_not_count(book: CodeBook, clock: Clock) -> None:
    for _ in range(3):
        book.issue(NUMBER)
    for _ in range(5):
        with pytest.raises(RateLimited):
            book.issue(NUMBER)
    clock.now += 3600.0
    assert book.requests_left(NUMBER) == 3


def test_a_number_never_asked_for_is_refused_like_an_expired_code(book: CodeBook, clock: Clock) -> None:
    code = book.issue(NUMBER)
    clock.now += 301
    with pytest.raises(CodeRejected) as expired:
        book.redeem(NUMBER, code)
    with pytest.raises(CodeRejected) as never:
        book.redeem(OTHER, "123456")
    assert expired.value.message == never.value.message


def test_the_book_is_bounded(clock: Clock) -> None:
    book = CodeBook(clock=clock, max_numbers=2)
    book.issue(NUMBER)
    book.issue(OTHER)
    with pytest.raises(RateLimited, match="busy"):
        book.issue("+8613800000003")
    clock.now += 3600.0
    book.issue("+8613800000003")  # old numbers are forgotten after the hour
