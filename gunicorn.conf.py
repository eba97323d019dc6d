"""Gunicorn settings for production and the benchmarks: ``gunicorn -c gunicorn.conf.py run:app``.

Every value comes from the environment, with defaults fit for one small VM:

* ``GUNICORN_BIND`` (default ``127.0.0.1:8000``; behind a proxy, keep it local).
* ``GUNICORN_WORKERS`` (default ``2 x CPUs + 1``), ``GUNICORN_THREADS`` (default 1:
  sync workers; above 1 gunicorn uses ``gthread`` workers, which also keep connections
  alive), ``GUNICORN_WORKER_CLASS`` to override.
* ``GUNICORN_TIMEOUT`` (default 30 s: a request that takes longer is a bug; uploads and
  exports stream), ``GUNICORN_GRACEFUL_TIMEOUT``, ``GUNICORN_KEEPALIVE``.
* ``GUNICORN_ACCESS_LOG``: ``-`` for stdout (the default), empty to switch it off (as
  the benchmarks do); errors always go to stderr.
* ``GUNICORN_MAX_REQUESTS``: recycle a worker after that many requests (0: never), with
  jitter so workers do not restart together.

The app is built in each worker after the fork (no ``preload_app``): SQLAlchemy's pool and
the Redis connection must not be shared across processes.
"""

from __future__ import annotations

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = _int("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1)
threads = _int("GUNICORN_THREADS", 1)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or ("gthread" if threads > 1 else "sync")
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
backlog = _int("GUNICORN_BACKLOG", 2048)
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10
# Request-line and header limits stay at gunicorn's defaults; the body limit is the app's
# MAX_CONTENT_LENGTH.
_access = os.environ.get("GUNICORN_ACCESS_LOG", "-")
accesslog = _access or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
proc_name = "woffice"
# Trust X-Forwarded-* only from the local proxy.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
