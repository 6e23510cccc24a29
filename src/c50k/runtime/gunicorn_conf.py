"""A gunicorn config module built from c50k's settings, for process managers that start
gunicorn directly:

    gunicorn -c python:c50k.runtime.gunicorn_conf

It is a process edge: gunicorn's master imports it and reads the settings (C50K_* or
C50K_SETTINGS_FILE) once; the workers it forks build their app from those same settings
(`wsgi_app` names the factory, so no application argument is needed). `c50k serve` uses
`gunicorn_options` itself and never imports this module.
"""

from typing import Any

from c50k.runtime.serving import gunicorn_options
from c50k.settings import Settings

settings = Settings()
# gunicorn reads a config module's globals.
globals().update(gunicorn_options(settings))
wsgi_app = "c50k.runtime.gunicorn_conf:create_app()"


def create_app() -> Any:
    """The app of one worker; gunicorn calls it after the fork."""
    from c50k.api.app import create_app as app_of  # noqa: PLC0415 -- the master needs no app.

    return app_of(settings)
