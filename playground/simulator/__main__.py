"""``python -m playground.simulator``: serve the simulator (see cli.py for flags)."""

from .cli import main

main()
