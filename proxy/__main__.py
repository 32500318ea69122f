"""``python -m proxy``: see ``proxy.cli``."""

from reference import early

early.guard()  # before the proxy's imports (reference/early.py)

from proxy.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
