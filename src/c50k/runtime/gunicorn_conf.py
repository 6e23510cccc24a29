"""A gunicorn config file built from c50k's settings (read from the environment), for process
managers that start gunicorn directly:

    gunicorn -c python:c50k.runtime.gunicorn_conf 'c50k.api:create_app()'

Nothing else imports this module; `c50k serve` uses `gunicorn_options` itself.
"""

from c50k.runtime.serving import gunicorn_options
from c50k.settings import Settings

# gunicorn reads a config module's globals.
globals().update(gunicorn_options(Settings()))
