"""Run the command-line interface: ``python -m gradbasics demo``."""

from gradbasics.cli import main

raise SystemExit(main())
