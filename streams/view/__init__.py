"""The Redis view the API serves: its key layout (`keys`), the worker's writer (`writer`) and the
rebuild from the changelog and output topics (`rebuild`)."""
