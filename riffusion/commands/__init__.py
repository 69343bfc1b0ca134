"""Sub-commands of the ``riffusion`` command line that live in their own modules."""
