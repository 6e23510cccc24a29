"""`pulumi up` runs this: the fleet from the stack config (c50k_fleet.py)."""

from c50k_fleet import build

build()
