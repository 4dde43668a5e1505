"""Pulse stream processing, one concern per subpackage:

core/     the pure rules (no I/O, no clock): the contract, windows, stages, churn, tiers
worker/   the Faust worker and its Kafka drivers around the core
view/     the Redis view the API reads: key layout, writer, rebuild
offline/  history files: replay, fit, evaluation, report
local/    the embedded stack and demo behind `pulse run`
kafka.py  aiokafka-only helpers shared by the worker and the API
"""
