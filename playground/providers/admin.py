from django.contrib import admin

from .models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Operators see that a key exists and its mask; never the ciphertext or the key."""

    list_display = ("user", "provider", "mask", "created_at", "last_used_at", "expires_at")
    list_filter = ("provider",)
    search_fields = ("user__username",)
    fields = ("user", "provider", "mask", "created_at", "last_used_at", "expires_at")
    readonly_fields = ("user", "provider", "mask", "created_at", "last_used_at")

    def has_add_permission(self, request):
        return False  # keys are validated upstream; only their owner adds them
