"""The command groups of `c50k` (db, render, stack, fleet, config): the command line's own package.

The tiers know nothing of it: no module outside `c50k.commands` and `c50k.cli` imports it.
"""
