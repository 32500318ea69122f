"""The one task runner: ``nox -s test`` is what CI and README run."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["test", "lint", "typecheck"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _install(session: nox.Session, *groups: str) -> None:
    session.install("-e", ".")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def test(session: nox.Session) -> None:
    """The pass/fail suite: unit, property, end-to-end and Redis-backed tests."""
    _install(session, "test")
    session.run(
        "pytest", *session.posargs, env={"HYPOTHESIS_PROFILE": "ci"} if os.environ.get("CI") else {}
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over everything we ship."""
    _install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict (configured in pyproject.toml)."""
    _install(session, "typecheck")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """End-to-end throughput and resume-latency figures; prints a table, asserts nothing."""
    _install(session, "test")
    session.run("python", "-m", "tests.bench", *session.posargs)


@nox.session(name="bench-scale")
def bench_scale(session: nox.Session) -> None:
    """Many 1 Hz sessions against one server process: lateness, CPU, RSS; table and plot."""
    _install(session, "test", "bench")
    session.run("python", "-m", "tests.bench_scale", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """Many more property examples, then a long chaos run with every terminal fault on."""
    _install(session, "test")
    session.run(
        "pytest",
        "tests/test_chaos_properties.py",
        "tests/test_store_model.py",
        "--timeout=0",  # hundreds of examples take longer than the per-test bound for CI
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "soak", "PROPERTY_EXAMPLES": "500"},
    )
    session.run(
        "python",
        "-m",
        "harness.chaos",
        "--clients",
        "200",
        "--concurrency",
        "50",
        "--drop-rate",
        "0.3",
        "--reset-rate",
        "0.1",
        "--blackhole-rate",
        "0.05",
        "--report",
        "soak-report.json",
    )
