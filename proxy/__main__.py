"""``python -m proxy``: see ``proxy.cli``."""

from proxy.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
