"""``python -m riffusion``: the same command line as the ``riffusion`` console script."""

from riffusion.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
