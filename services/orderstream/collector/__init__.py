"""Writes execution reports to MongoDB order history (issue 6)."""
