from reference import early

early.guard()  # before the suite's imports (reference/early.py)

import sys  # noqa: E402

from .cli import main  # noqa: E402

sys.exit(main())
