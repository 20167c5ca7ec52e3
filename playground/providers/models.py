from django.conf import settings
from django.db import models


class ApiKey(models.Model):
    """A user's key for one provider, encrypted at rest; only its mask is ever shown."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    provider = models.CharField(max_length=64)
    ciphertext = models.TextField()
    mask = models.CharField(max_length=32)
    models_available = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "provider"], name="one_key_per_user_provider")]

    def __str__(self) -> str:
        return f"{self.provider} key {self.mask}"
