"""Sub-commands of the ``riffusion`` command line that live in their own modules.

Each module has ``add_parser(subparsers, **kwargs)``, which defines the sub-command, and
``run(args) -> int``, which calls the library; heavy imports happen inside ``run``.
"""
