"""Collector: writes execution reports and balance changes to the traders' read model in MongoDB
(order state, order events, balance history, current balances), idempotently in batches; the
gateway reads it through common/history.py."""
