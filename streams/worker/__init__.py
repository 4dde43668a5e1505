"""The Faust worker: consumes user events and ticks, applies the core, publishes outputs, keeps
the state table (with its changelog) and feeds the Redis view. Adapters only: no rules here."""
