"""Order lifecycle authority: order state machine, reports, positions (issue 5)."""
