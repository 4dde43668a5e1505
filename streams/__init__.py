"""Pulse stream processing: the pure lifecycle core and the Faust worker around it."""
