"""Unbound extension singletons; ``create_app`` binds each with ``init_app``."""

from flask_babel import Babel
from flask_wtf import CSRFProtect

from qol_app.db import db

babel = Babel()
csrf = CSRFProtect()

__all__ = ["babel", "csrf", "db"]
