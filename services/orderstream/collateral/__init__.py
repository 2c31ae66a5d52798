"""Per-account collateral ledger: balances, holds, settlement (issue 5)."""
