"""``python -m hodei`` is the ``hodei`` command."""

from hodei.cli import main

main()
