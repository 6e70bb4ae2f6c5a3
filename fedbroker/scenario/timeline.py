"""The scenario's calendar: the dates the epidemic and the mobility models both turn on, in one place.

Days are integers relative to the scenario's first day (day 0 = ``SCENARIO_START`` by default, 2020-01-01).
The default scenario runs ``DEFAULT_DAYS`` = 60 days, 2020-01-01 .. 2020-02-29, and follows the early 2020
calendar of Hubei:

=====  ==========  ===========================================================================================
day    date        event
=====  ==========  ===========================================================================================
-6..0  2019-12-26  the outbreak is seeded in the epicentre district (武昌区, Wuhan) (``SEED_INFECTION_DAYS``)
9      2020-01-10  the Spring Festival travel season starts: the holiday exodus (``HOLIDAY_EXODUS_DAY``)
22     2020-01-23  travel restriction on the epicentre prefecture: nobody leaves or enters (``RESTRICTION_DAY``)
23     2020-01-24  first-level response in every province: distancing lowers transmission (``DISTANCING_DAY``)
24     2020-01-25  Spring Festival (``SPRING_FESTIVAL_DAY``)
40     2020-02-10  work resumes outside the epicentre: the return wave (``RETURN_WAVE_DAY``)
=====  ==========  ===========================================================================================

A scenario shorter than a date simply ends before it (a 21-day test scenario never restricts travel).
The epicentre is the seed district's prefecture (code // 100): Wuhan, 4201, in the default domain.
"""

from __future__ import annotations

from datetime import date

SCENARIO_START = date(2020, 1, 1)
DEFAULT_DAYS = 60

SEED_INFECTION_DAYS = 7  # seeds are infected on days -6 .. 0
HOLIDAY_EXODUS_DAY = 9
RESTRICTION_DAY = 22
DISTANCING_DAY = 23
SPRING_FESTIVAL_DAY = 24
RETURN_WAVE_DAY = 40

IMPORTED_LOOKBACK_DAYS = 14
"""A case reported outside the epicentre who spent a night there within this many days before onset is imported."""


def epicentre_prefecture(seed_district_code: int) -> int:
    """The four-digit prefecture code of the epicentre: the seed district's (420106 -> 4201)."""
    return seed_district_code // 100
