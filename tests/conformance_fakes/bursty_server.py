"""A stateless-only NSP server with one planted flaw: it never re-anchors its schedule. Once
its writes have been blocked (a client that stopped reading), every number that fell due in
the meantime goes out at once, in a burst (spec §13 says: re-anchor instead).

Used by tests/test_conformance.py to show that ``13/re-anchor-after-blocked-writes`` can fail.
Options as in spec Appendix B. A stateful HELLO gets a WELCOME and nothing more: enough for
the suite to learn the TTL it announces.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import struct

WELCOME, DATA, FINAL = 2, 3, 4


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


def number(a: int, n: int, index: int) -> bytes:
    value = a << index
    body = struct.pack(">I", index) + value.to_bytes((value.bit_length() + 7) // 8, "big")
    return frame(FINAL if index == n - 1 else DATA, body)


async def serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, interval_ms: int, ttl_ms: int
) -> None:
    loop = asyncio.get_running_loop()
    try:
        header = await reader.readexactly(3)
        payload = await reader.readexactly(struct.unpack(">H", header[1:])[0])
        _, mode, flags, n, next_index = struct.unpack(">BBBII", payload[:11])
        if mode != 1:
            welcome = struct.pack(">BBBIIIII", 1, mode, 0, n, next_index, interval_ms, 0, ttl_ms)
            writer.write(frame(WELCOME, welcome))
            return
        a = struct.unpack(">I", payload[11:15])[0] if flags & 1 else random.randint(1, 255)
        writer.write(
            frame(WELCOME, struct.pack(">BBBIIIII", 1, 1, 0, n, next_index, interval_ms, a, 0))
        )
        t0 = loop.time()
        for j, index in enumerate(range(next_index, n)):
            await asyncio.sleep(max(0.0, t0 + j * interval_ms / 1000 - loop.time()))
            writer.write(number(a, n, index))
            await writer.drain()  # blocks while the client does not read; no re-anchoring after
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--session-ttl", default="30")
    parser.add_argument("--store", default="memory://")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    interval_ms = round(args.interval * 1000)
    ttl_ms = round(float(args.session_ttl) * 1000)
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, interval_ms, ttl_ms), "127.0.0.1", args.port
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
