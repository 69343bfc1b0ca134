"""Sub-commands of the ``riffusion`` command line, one module each (``add_parser`` + ``run``)."""
