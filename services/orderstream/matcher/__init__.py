"""The internal venue: price-time-priority books per symbol (issue 3)."""
