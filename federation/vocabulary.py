"""The federation's fixed vocabularies, each defined once (docs/protocol.md, "Vocabularies").

Several orders here are part of the wire layout: the status axis of ``health.cases`` is indexed in
:data:`CASE_STATUSES` order, so changing an order changes every vector and breaks interoperation.
"""

from __future__ import annotations

from typing import Final

#: Agency kinds, one raw-table set each (docs/protocol.md, "Raw tables").
AGENCY_KINDS: Final = ("telecom", "health", "transport")

#: Case statuses in the order of the status axis of ``health.cases`` (index ``d * 3 + s``).
CASE_STATUSES: Final = ("confirmed", "suspected", "close_contact")

#: The origin axis of ``health.confirmed_daily``: local (``imported`` false or NULL), imported.
CASE_ORIGINS: Final = ("local", "imported")

#: Which date a daily confirmed count is dated by (``health.confirmed_daily``'s ``date`` param).
CASE_DATES: Final = ("report", "onset")

#: A cluster counts in the days ending a day (``health.clusters``): the February 2020 tier rule's 14 days.
CLUSTER_WINDOW_DAYS: Final = 14

#: Transport modes a ticket may have; ``all`` in a query means every mode.
TRANSPORT_MODES: Final = ("rail", "air", "coach")
TRANSPORT_MODE_CHOICES: Final = ("all", *TRANSPORT_MODES)

#: Which agencies count trips for ``flows``: never both, they count the same travel twice.
FLOW_SOURCES: Final = ("telecom", "transport")

#: Which small-cell threshold a released count is held to: k for mobility counts or k for case counts.
DISCLOSURE_KINDS: Final = ("mobility", "cases")

#: A hard ceiling on any window, whatever a policy says: a year of presence over the national registry is ~1 M
#: cells; a longer window is a mistake, not a query.
MAX_WINDOW_DAYS: Final = 366

# The contribution bound of the trips aggregates: trips (tickets) one person adds per day, unless the agency's
# privacy policy sets another, at most MAX_TRIPS_PER_DAY_LIMIT (the daily partials keep that many ranks).
DEFAULT_MAX_TRIPS_PER_DAY: Final = 4
MAX_TRIPS_PER_DAY_LIMIT: Final = 16
