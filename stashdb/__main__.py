"""``python -m stashdb``: the command line."""

from stashdb.cli import main

main()
