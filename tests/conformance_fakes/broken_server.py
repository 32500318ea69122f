"""The reference server with one planted bug: stateful values from index 2 on have their
lowest bit flipped (the FINAL checksum stays that of the true sequence).

Used by tests/test_conformance.py to show that the server suite can fail.
"""

from __future__ import annotations

import sys

import reference.server as server

_true_value = server.stateful_value  # type: ignore[attr-defined]


def _broken_value(seed: int, index: int) -> int:
    value = _true_value(seed, index)
    return value ^ 1 if index >= 2 else value


server.stateful_value = _broken_value  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.exit(server.main())
