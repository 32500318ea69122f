"""Running cases: concurrently where they allow it, with a progress bar on stderr."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .model import Case, Check, Outcome, Result, Skip, judge

log = logging.getLogger("harness.conformance")

#: What to say when a capability is missing.
MISSING = {
    "redis": "needs --redis-url (or --redis) to plant and inspect sessions",
    "spawn": "needs the suite to start the server (--server-cmd, or no --port)",
    "json-template": "needs {json} in the client template or a client that accepts --json",
}


def select(cases: Sequence[Case], prefixes: Sequence[str]) -> list[Case]:
    """Cases whose id starts with one of ``prefixes`` (a section ``16.4`` also matches
    ``16.4/...``); all when none are given."""
    if not prefixes:
        return list(cases)
    chosen = []
    for case in cases:
        for prefix in prefixes:
            if case.id == prefix or (
                case.id.startswith(prefix)
                and (prefix.endswith(("/", "-")) or case.id[len(prefix)] in "/.-")
            ):
                chosen.append(case)
                break
    return chosen


async def run_one(case: Case, target: object, capabilities: set[str], limit: float) -> Result:
    check = Check()
    missing = sorted(case.needs - capabilities)
    if missing:
        return judge(case, check, Skip("; ".join(MISSING.get(m, m) for m in missing)))
    error: BaseException | None = None
    try:
        with anyio.fail_after(limit):
            await case.run(target, check)
    except TimeoutError:
        check.must_failures.append(f"the case did not finish within {limit:g} s")
        error = None
    except Exception as exc:  # a case that breaks is reported, never a traceback for the run
        error = exc
        log.debug("case %s raised", case.id, exc_info=True)
    return judge(case, check, error)


async def run_all(
    cases: Sequence[Case],
    target: object,
    capabilities: set[str],
    *,
    concurrency: int,
    limit: float,
    console: Console,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run every case; results in the order of ``cases``."""
    results: dict[str, Result] = {}
    limiter = anyio.CapacityLimiter(concurrency)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task("conformance", total=len(cases), failed=0)
        failed = 0

        async def one(case: Case) -> None:
            nonlocal failed
            async with limiter:
                result = await run_one(case, target, capabilities, limit)
            results[case.id] = result
            if result.outcome is Outcome.FAIL:
                failed += 1
            progress.update(task, advance=1, failed=failed, description=case.id[:40])
            if on_result is not None:
                on_result(result)

        async with anyio.create_task_group() as tg:
            for case in cases:
                if not case.exclusive:
                    tg.start_soon(one, case)
        for case in cases:
            if case.exclusive:
                await one(case)
        progress.update(task, description="done")
    return [results[case.id] for case in cases]
