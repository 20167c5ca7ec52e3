from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("sessions/new/", views.session_new, name="session-new"),
    path("sessions/<int:session_id>/", views.session_open, name="session"),
    path("sessions/<int:session_id>/settings/", views.session_settings, name="session-settings"),
    path("sessions/<int:session_id>/delete/", views.session_delete, name="session-delete"),
    path("sessions/<int:session_id>/b/<int:branch_id>/", views.branch_view, name="branch"),
    path("sessions/<int:session_id>/b/<int:branch_id>/send/", views.message_send, name="message-send"),
    path("turns/<int:turn_id>/stop/", views.turn_stop, name="turn-stop"),
    path("turns/<int:turn_id>/retry/", views.turn_retry, name="turn-retry"),
]
