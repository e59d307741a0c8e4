"""``python -m my_cache``: the ``mycache`` command."""

from my_cache.cli import main

main()
