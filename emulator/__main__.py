"""``python -m emulator``: the same command line as ``any-llm-emulator``."""

import sys

from emulator.cli import main

sys.exit(main())
