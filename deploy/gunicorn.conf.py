"""gunicorn settings shared by the four web processes.

Run: gunicorn -c deploy/gunicorn.conf.py "services.records.app:create_app()"
"""

import os
import tempfile

bind = os.environ.get("CARETRAIL_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("CARETRAIL_WEB_WORKERS", "2"))
threads = int(os.environ.get("CARETRAIL_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 10
accesslog = None  # access logs would carry patient ids in paths; metrics count requests
keepalive = 5

# /metrics must add up every worker's samples: prometheus-client's multiprocess mode.
# The directory is set before the app (and prometheus_client) is imported.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="caretrail-metrics-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def child_exit(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    # JSON logs with trace ids, as in the workers; `caretrail web` names the service.
    from shared.telemetry import setup_logging

    setup_logging(os.environ.get("CARETRAIL_SERVICE", "caretrail"))
