"""``python -m prelabel``: the command line (the same as the ``prelabel`` command)."""

from .cli import main

if __name__ == "__main__":
    main()
