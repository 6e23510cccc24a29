"""The HTTP face of c50k: routes, input rules and the mapping of errors to statuses.

The composition root is `c50k.api.app.create_app`. This module imports none of it: gunicorn's
master imports `c50k.api.lifecycle` (through the worker class) and must not load
prometheus_client before its on_starting hook names the metrics directory.
"""
