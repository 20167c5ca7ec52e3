"""A live A/B run: the same scripted conversation re-sent, for real, under two or more
prompt_cache_key scopes at once (lab/live.py). Each scope's copy is an ordinary ChatSession
owned by the user, so what it spent is in the session's cost panel and the user's budget like
any other; these rows only remember which copies belong to which run and which copy turn
re-ran which recorded request, to put measured next to predicted.
"""

from django.conf import settings
from django.db import models


class LabRun(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        STOPPED = "stopped"
        FAILED = "failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lab_runs")
    # The session whose recorded requests are the script (its copies are separate sessions).
    session = models.ForeignKey("chat.ChatSession", on_delete=models.CASCADE, related_name="lab_runs")
    retention = models.CharField(max_length=16, default="in-memory")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stop_requested = models.BooleanField(default=False)
    steps = models.PositiveIntegerField(default=0)  # requests in the script
    estimate = models.DecimalField(max_digits=20, decimal_places=12, null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Touched by the driver while it runs: a run whose driver died (a restart) is shown as such.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def active(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.RUNNING)


class LabCopy(models.Model):
    """One scope's copy of the conversation in a run."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        STOPPED = "stopped"
        FAILED = "failed"

    run = models.ForeignKey(LabRun, on_delete=models.CASCADE, related_name="copies")
    scope = models.CharField(max_length=24)
    # SET_NULL: the user may delete a copy; the run then says so rather than vanish.
    session = models.ForeignKey("chat.ChatSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True)
    predicted_cost = models.DecimalField(max_digits=20, decimal_places=12, null=True, blank=True)
    # [[recorded request index, copy turn id], ...] in the order re-run.
    turns = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["id"]
