"""The ``client`` role (placeholder while the server role lands)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from .model import Case


def add_client_arguments(
    parser: argparse.ArgumentParser,
    ranged: Callable[..., Callable[[str], float]],
    integer: Callable[[str], float],
) -> None:
    parser.add_argument("--client-cmd", metavar="TEMPLATE")


def client_cases() -> list[Case]:
    return []


async def prepare_client(
    args: argparse.Namespace, parser: argparse.ArgumentParser, stack: AsyncExitStack
) -> tuple[object, set[str], dict[str, Any]]:
    return object(), set(), {}
