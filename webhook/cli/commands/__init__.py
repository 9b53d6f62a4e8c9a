"""The ``trustgate`` subcommands, one module per command group.

Each module adds its subcommands to the parser with an ``add_*`` function and
holds their handlers; ``webhook.cli.main`` only assembles them and dispatches.
"""
