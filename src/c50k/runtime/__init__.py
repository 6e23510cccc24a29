"""How c50k runs: gunicorn and its worker, process lifecycle and graceful drain."""
