"""`python -m audioclf`: the command line (see audioclf.cli)."""
import sys

from audioclf.cli import main

sys.exit(main())
