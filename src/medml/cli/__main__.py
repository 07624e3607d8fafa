"""``python -m medml.cli``: the same entry point as the ``medml`` script."""

from medml.cli.main import main

main()
