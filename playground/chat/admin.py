from django.contrib import admin

from .models import Branch, ChatSession, Turn


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "provider", "model", "cache_scope", "updated_at")
    list_filter = ("provider", "cache_scope")


@admin.register(Branch)
class BranchAdmin(admin.ModelAdmin):
    list_display = ("name", "session", "head", "updated_at")


@admin.register(Turn)
class TurnAdmin(admin.ModelAdmin):
    """Turns show what was sent and what came back; key_ref is an opaque reference, not a key."""

    list_display = ("id", "session", "model", "prompt_cache_key", "prompt_tokens", "cached_tokens", "cost_actual", "error_kind")
    exclude = ("key_ref",)
