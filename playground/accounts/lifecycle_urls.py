from django.urls import path

from . import lifecycle_views as views

urlpatterns = [
    path("password/change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password/change/done/", views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/sent/", views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password/reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("password/reset/complete/", views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("account/settings/", views.account_settings, name="account-settings"),
    path("account/settings/email/", views.email_set, name="account-email"),
    path("account/settings/delete/", views.account_delete, name="account-delete"),
    path("account/deleted/", views.account_deleted, name="account-deleted"),
]
