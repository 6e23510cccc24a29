"""c50k: a Python service stack that holds 50,000+ concurrent requests, and proves it."""

__version__ = "0.1.0"
