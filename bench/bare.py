"""The limit beside the read scenario: a Flask endpoint that does nothing, served by the same
gunicorn configuration (deploy/gunicorn.conf.py) with the same worker count.

    gunicorn -c deploy/gunicorn.conf.py --bind 127.0.0.1:8099 "bench.bare:create_app()"
"""

from __future__ import annotations

from flask import Flask


def create_app() -> Flask:
    """A Flask app with one JSON endpoint and nothing else."""
    app = Flask("bare")

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        """Answer at once."""
        return {"ok": True}

    return app
