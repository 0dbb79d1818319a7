"""The ``delusive`` command line: thin sub-commands over the library layers (nothing imports this package)."""
