"""The garbage-collector policy of a server holding thousands of live streams.

CPython collects its oldest generation whenever a quarter more objects have survived into it,
and that walks every live object: at 10,000 sessions a pause of about a second, which alone
breaks the lateness budget (spec/PROTOCOL.md §16). A server's steady state leaves no cyclic
garbage behind (connections are torn down by reference counting; see
``reference.server._break_transport_cycle``), so young collections stay automatic and the full
one runs on a fixed, rare schedule as a safety net. Objects made during start-up live as long
as the process and are frozen out of all of it.

Both the reference server (``python -m reference.server``) and the chaos harness's own server
(``harness.server_process``) run ``run_server_gc_policy`` in their task group.
"""

from __future__ import annotations

import gc
from typing import NoReturn

import anyio
from anyio.abc import TaskStatus

#: Seconds between the scheduled full collections of the heap.
FULL_COLLECTION_PERIOD = 600.0


async def run_server_gc_policy(
    *,
    period: float = FULL_COLLECTION_PERIOD,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Put the server's collector policy in force for the rest of the process; run until cancelled.

    Start it with ``await task_group.start(run_server_gc_policy)`` once start-up is done (store
    open, server built) and before serving: by the time ``start`` returns, everything alive
    has been collected once and frozen (``gc.freeze``) and automatic full collections are off
    (the oldest generation's threshold is set out of reach; young and middle thresholds are
    kept). From then on it runs a full ``gc.collect()`` every ``period`` seconds (default
    ``FULL_COLLECTION_PERIOD``, 600) until its task group is cancelled. The policy itself
    stays in force after cancellation: it is process-wide, as a server process is.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1 << 30)  # no automatic full collection
    task_status.started()
    while True:
        await anyio.sleep(period)
        gc.collect()
