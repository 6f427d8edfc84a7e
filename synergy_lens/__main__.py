"""``python -m synergy_lens ...``: the same as the ``synergy-lens`` command."""

import sys

from synergy_lens.cli import main

if __name__ == "__main__":
    sys.exit(main())
