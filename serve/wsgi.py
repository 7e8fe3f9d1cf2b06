"""The WSGI entry point gunicorn loads in each worker: the only module-level app."""

from serve.app import create_app

app = create_app()
