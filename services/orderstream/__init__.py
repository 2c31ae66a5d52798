"""Orderstream: an event-streaming trading backend."""
