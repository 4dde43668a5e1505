"""Pulse HTTP services (state API); see the state API issue."""
