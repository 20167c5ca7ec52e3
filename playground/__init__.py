"""Prompt Cache Playground: the Django project and its apps."""

# Load the Celery app with Django so @shared_task binds to it (and its Redis broker), not to
# Celery's default app, which would publish to an AMQP broker on localhost.
from .celery import app as celery_app

__all__ = ("celery_app",)
