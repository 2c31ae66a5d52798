"""Orderstream: an event-streaming trading backend."""

from orderstream.common.decimals import install as _install_decimal_context

_install_decimal_context()  # every process: one decimal context wide enough for the wire (38 digits)
