"""The web server: GitHub webhooks, the STAT relay, health, metrics and the dashboard.

`create_app` is a Flask application factory (`stat-bot web` serves it with
gunicorn); each concern is a blueprint in a module of its own.
"""

from stat_bot.web.app import create_app

__all__ = ["create_app"]
