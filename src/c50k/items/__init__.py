"""The items domain: where an item comes from, and the aggregate answer. Knows no HTTP."""
