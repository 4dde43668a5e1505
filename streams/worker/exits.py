"""How the worker stops itself when going on would be wrong: its exit statuses and the exit."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("pulse.worker")

# The worker's exit status when the broker lost records it had already handled.
EXIT_BROKER_DATA_LOST = 3
# ... and when handling a batch failed (e.g. the broker did not acknowledge its outputs).
EXIT_BATCH_FAILED = 4


def stop_process(message: str, status: int) -> None:
    """Log `message` and exit at once with `status`, committing nothing more."""
    log.critical(message)
    print(f"pulse worker: {message}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(status)


def data_lost(detail: str) -> None:
    """Exit at once (status EXIT_BROKER_DATA_LOST) with a message saying what to do.

    Going on would fold new records into a table the broker no longer backs (its changelog
    and the committed offsets are gone) and skip them as redeliveries. Exiting without
    committing anything is as safe as a kill -9: delivery is at-least-once.
    """
    message = (
        f"the broker lost data this worker already handled ({detail}). "
        "It was probably restarted without its storage (the embedded Tansu keeps "
        "everything in memory). Stopping instead of continuing with a table that the "
        "broker's logs no longer back. Recovery: stop every worker, recreate the topics "
        "(`pulse topics`), republish the input, start the workers, then `pulse "
        "rebuild-view` (docs/operations.md, 'When the broker lost its data')."
    )
    stop_process(message, EXIT_BROKER_DATA_LOST)
