"""Matcher: the internal venue. One price-time-priority book per symbol; it matches orders, keeps
order lists (OCO, bracket) linked, and publishes fills and market data (book updates, trades,
depth snapshots)."""
