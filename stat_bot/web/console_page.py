"""Placeholder: filled in by the console_page work."""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    """Register this module's routes (csrf: to exempt routes that authenticate otherwise)."""
