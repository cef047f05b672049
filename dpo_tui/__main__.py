"""`python -m dpo_tui`: the same program as `dpo-tui` (the console runs its audit this way,
in a process of its own)."""

import sys

from dpo_tui.cli import main

sys.exit(main())
