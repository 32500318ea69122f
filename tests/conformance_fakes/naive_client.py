"""A naive NSP client that gets the happy path right and nothing else: it never reconnects,
checks nothing, and reports whatever it has as a success when the connection ends.

Used by tests/test_conformance.py to show that the client suite can fail.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import struct
import sys
import uuid


def main() -> int:  # noqa: C901 (a deliberately naive client, kept in one function so its flaws are visible)
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args, _ = parser.parse_known_args()
    stateful = args.mode == "stateful"
    cid = str(uuid.uuid4())
    tail = cid.encode() if stateful else b"\0\0\0\0"
    payload = struct.pack(">BBBII", 1, 2 if stateful else 1, 0, args.n, 0) + tail
    sock = socket.create_connection(("127.0.0.1", args.port))
    sock.sendall(struct.pack(">BH", 1, len(payload)) + payload)
    data = b""
    a, total, received, digest, final = 0, 0, 0, hashlib.sha256(), b""
    sock.settimeout(10)
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
        while len(data) >= 3:
            kind, length = struct.unpack(">BH", data[:3])
            if len(data) < 3 + length:
                break
            body, data = data[3 : 3 + length], data[3 + length :]
            if kind == 2 and len(body) >= 23:
                a = struct.unpack(">I", body[15:19])[0]
            elif kind in (3, 4):
                value = body[4:8] if stateful else body[4:]
                total += int.from_bytes(value, "big")
                digest.update(value[:4])
                received += 1
                final = body[8:40] if kind == 4 else final
    sock.close()
    ok = digest.hexdigest()
    if args.json:
        doc = {
            "mode": args.mode,
            "n": args.n,
            "ok": True,
            "reconnects": 0,
            "received": received,
            "error": None,
        }
        if stateful:
            doc |= {
                "client_id": cid,
                "checksum_expected": final.hex() or ok,
                "checksum_computed": ok,
                "final_frame_lost": False,
            }
        else:
            doc |= {"first": str(a), "sum": str(total)}
        print(json.dumps(doc))
    elif stateful:
        print(f"client_id {cid}\nchecksum_expected {ok}\nchecksum_computed {ok}\nSUCCESS")
    else:
        print(total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
