"""Smart order router: pre-trade risk, venue choice, baskets (issue 5)."""
