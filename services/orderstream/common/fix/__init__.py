"""FIX 4.4 support for the FIX session layer: the data dictionary that checks every message."""
