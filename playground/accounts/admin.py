from django.contrib import admin
from django.utils.html import format_html

from .models import Invitation


def _copy_link(url: str):
    return format_html(
        '<input class="invite-link" type="text" readonly size="40" value="{}"> '
        '<button type="button" class="button" data-copy-link="{}">Copy</button>',
        url,
        url,
    )


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("email", "state", "created_by", "created_at", "expires_at", "used_by", "used_at")
    fields = ("email", "expires_at", "created_by", "used_by", "used_at")
    readonly_fields = ("created_by", "used_by", "used_at")
    search_fields = ("email", "used_by__username")

    class Media:
        js = ["js/invite-admin.js"]

    def get_list_display(self, request):
        """The absolute sign-up link of each open invitation, with a copy button (it needs
        the request for the scheme and host, hence a column made per request)."""

        @admin.display(description="copy link")
        def copy_link(invitation):
            if invitation.state != "open":
                return invitation.state
            return _copy_link(request.build_absolute_uri(invitation.signup_path()))

        return (*super().get_list_display(request), copy_link)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, format_html("Invitation link: {}", request.build_absolute_uri(obj.signup_path())))
        return super().response_add(request, obj, post_url_continue)
