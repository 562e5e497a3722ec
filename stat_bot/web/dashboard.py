"""The dashboard's pages (placeholder until the dashboard work fills it in)."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template_string
from flask_login import login_required
from flask_wtf.csrf import CSRFProtect

bp = Blueprint("dashboard", __name__)


@bp.route("/")
@login_required
def index() -> str:
    return render_template_string(
        '{% extends "base.html" %}{% block content %}<h1>Jobs</h1>{% endblock %}'
    )


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    app.register_blueprint(bp)
