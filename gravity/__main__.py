"""``python -m gravity``."""

from gravity.cli import main

main()
