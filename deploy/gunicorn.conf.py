"""gunicorn settings for one qol_app web node (``gunicorn -c gunicorn.conf.py 'qol_app:create_app()'``).

The bind address comes from the command line (the systemd unit passes ``127.0.0.1:<port>``).
Sync workers: nginx buffers requests and responses, so a slow phone never holds a worker.
"""

import multiprocessing
import os

workers = int(os.environ.get("QOL_WEB_WORKERS") or multiprocessing.cpu_count() * 2 + 1)
worker_class = "sync"
# Exports of the whole trial are the slowest requests; nginx waits 300 s (qol-proxy.conf).
timeout = int(os.environ.get("QOL_WEB_TIMEOUT") or 300)
graceful_timeout = 30
# Recycle workers now and then, so a slow leak in any library never grows without bound.
max_requests = 5000
max_requests_jitter = 500
# No gunicorn access log: it would write personal links (/p/l/<token>) to disk. The app's JSON log
# (QOL_LOG_FORMAT=json) writes one line per request with the route instead, and nginx its own.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("QOL_WEB_LOG_LEVEL", "info")
# Only nginx on this host may set X-Forwarded-* (the app reads them through QOL_TRUSTED_PROXIES).
forwarded_allow_ips = os.environ.get("QOL_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
proc_name = "qol-web"
