from django.apps import AppConfig


class LabConfig(AppConfig):
    """The key-strategy lab. An app (not just views) because a live A/B run is stored:
    lab/models.py. Its Celery task (lab/tasks.py) is found by autodiscovery."""

    name = "playground.lab"
    label = "lab"
