"""Router: pre-trade risk and kill switches, the venue of each funded order (the internal matcher
or an external FIX venue), baskets, and the parents whose children it plans: TWAP/VWAP slices and
index-order rounds."""
