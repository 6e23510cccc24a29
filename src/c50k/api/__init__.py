"""The HTTP face of c50k: routes, input rules and the mapping of errors to statuses."""

from c50k.api.app import create_app

__all__ = ["create_app"]
