"""``python -m emulator``: the same command line as ``any-llm-emulator``."""

import sys

from emulator.runtime.cli import main

sys.exit(main())
