"""Execution: the authority on each order's lifecycle. It turns venue fills and acknowledgements
into execution reports (the order state machine, one sequence per order), keeps positions, and
derives the ticker and candles from the trades."""
