"""A carrier's consented itinerary service: one subscriber's own cities, for that subscriber only."""
