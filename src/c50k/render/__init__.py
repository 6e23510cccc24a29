"""Deployment files rendered from the settings: HAProxy, nginx, gunicorn, systemd, sysctl.

Every file comes from one `Settings` object and its inventory of app instances
(`C50K_LB_INSTANCES`), so nothing is copied by hand. `c50k render` is the command.
"""
