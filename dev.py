#!/usr/bin/env python3
"""The newcomer's entry point: two commands, no set-up, nothing installed outside this directory.

    python3 dev.py demo     # a chaos run on the in-memory defaults (extra options go to it)
    python3 dev.py test     # the test suite: ``nox -s test`` (extra arguments go to pytest)

Each creates ``.venv`` here on first use (the package, editable, and nox), or reuses it, and
refreshes it when pyproject.toml changes. It never touches the system interpreter, so it works on
a stock Debian/Ubuntu Python (PEP 668), which needs only ``apt-get install python3-venv``.
Exit status: that of the command run; 2 for an unknown command; 1 if the environment cannot be
made (one line says why).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
#: Written once the environment holds what pyproject.toml asks for; its text is the file's hash.
STAMP = VENV / ".numstream-installed"
NOX = "nox>=2024.10.9"
DEMO = ["-m", "harness.chaos", "--drop-rate", "0.2"]


def _say(message: str) -> None:
    print(f"dev.py: {message}", file=sys.stderr, flush=True)


def _fingerprint() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + NOX.encode()).hexdigest()


def ensure_environment() -> bool:
    """Create or refresh ``.venv``; False (after saying why) if that is impossible."""
    python = BIN / "python"
    if STAMP.exists() and python.exists() and STAMP.read_text() == _fingerprint():
        return True
    if not python.exists():
        _say(f"creating {VENV} (first run only)")
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except (OSError, subprocess.CalledProcessError) as exc:
            _say(
                f"cannot create a virtual environment ({exc}); on Debian or Ubuntu install "
                "python3-venv first: sudo apt-get install python3-venv"
            )
            return False
    _say("installing the package and nox into .venv")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if subprocess.run([*pip, "-e", str(ROOT), NOX], check=False).returncode != 0:
        _say("pip could not install into .venv (see above); nothing outside .venv was changed")
        return False
    STAMP.write_text(_fingerprint())
    return True


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        _say(f"needs Python 3.11 or newer, this is {sys.version.split()[0]}")
        return 1
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "demo":
        run = [str(BIN / "python"), *DEMO, *rest]
    elif command == "test":
        run = [str(BIN / "nox"), "-s", "test", *(["--", *rest] if rest else [])]
    else:
        print(__doc__, file=sys.stderr)
        return 0 if command in ("-h", "--help", "help") else 2
    if not ensure_environment():
        return 1
    os.chdir(ROOT)
    try:
        return subprocess.run(run, check=False).returncode
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
