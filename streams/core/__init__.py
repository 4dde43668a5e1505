"""The pure core: Pulse's rules as data in, data out (no I/O, no clock, no Faust, Kafka or Redis).

    apply_event(state, event, policy) -> Result     fold one event into a user's state
    sweep(state, now, policy) -> Result             let event time pass up to `now`

The live worker (`streams.worker`), the offline replay (`streams.offline`) and the tests all
call these two, so live and replay decide identically. import-linter keeps the adapters out.
"""

from streams.core.contract import Event, InvalidEvent, parse_event
from streams.core.engine import Result, Status, apply_event, sweep
from streams.core.outputs import Output
from streams.core.policy import Policy
from streams.core.state import UserState

__all__ = [
    "Event",
    "InvalidEvent",
    "Output",
    "Policy",
    "Result",
    "Status",
    "UserState",
    "apply_event",
    "parse_event",
    "sweep",
]
