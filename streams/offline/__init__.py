"""Offline work on history files: reading them (`history`), replaying them through the core
(`replay`, `backtest`), judging the warnings (`evaluation`), fitting the churn model (`fit`) and
the HTML report (`report`)."""
