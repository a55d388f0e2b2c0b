"""qol_app: patient-reported quality-of-life collection for the CONQUER trial."""

from __future__ import annotations

import os
from typing import Any

# Arrow's allocator for the app's processes, chosen before pyarrow is first imported (Arrow reads
# this once, at import): the system allocator, whose freed memory export.memory.release_memory hands
# back (malloc_trim). pyarrow's default, mimalloc, keeps freed segments: a 100,000-form export
# peaked about 60 MB higher with it (bench/bench_export.py). An environment that sets the variable
# (mimalloc, jemalloc or system) keeps its choice.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from flask import Flask  # noqa: E402 - after the allocator choice above

from qol_app.version import __version__

__all__ = ["__version__", "create_app"]


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the WSGI app. It only wires: no queries, no migrations, no threads.

    Pre-fork servers import this once per worker; anything started here would run N times.
    """
    app = Flask(__name__, instance_relative_config=True)
    from qol_app.config import load_config

    load_config(app, test_config)

    from qol_app import i18n, logs, security, web
    from qol_app.extensions import csrf, db
    from qol_app.services import protocol

    trusted = int(app.config.get("TRUSTED_PROXIES") or 0)
    if trusted:
        # Behind nginx: take the client address, scheme and host from the last ``trusted`` hops
        # of X-Forwarded-For/-Proto/-Host (the proxy must set them, overwriting the client's).
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted, x_proto=trusted, x_host=trusted)  # type: ignore[method-assign]

    db.init_app(app)
    protocol.init_app(app)  # instrument registry, schedule, alert rules, settings: for the services
    # Sessions are resolved before the CSRF check so its error page knows who is asking.
    security.init_app(app)
    logs.init_app(app)
    csrf.init_app(app)
    i18n.init_app(app)
    web.init_app(app)

    from qol_app.cli import register_commands

    register_commands(app)
    return app
