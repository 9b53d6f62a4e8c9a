"""The ``trustgate`` command: one module per command group, with its output formats."""
