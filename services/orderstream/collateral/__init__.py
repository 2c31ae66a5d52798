"""Collateral: each account's ledger of free and held balances. It holds what an order can cost
before the order goes on (order.commands -> order.funded), settles fills and fees, releases what an
ended order no longer needs, and takes deposits and withdrawals (collateral.commands)."""
