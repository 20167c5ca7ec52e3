from django.urls import path, re_path

from . import views

urlpatterns = [
    path("sessions/<int:session_id>/lab/", views.lab, name="lab"),
    path("sessions/<int:session_id>/lab/shapes/", views.lab_shapes, name="lab-shapes"),
    path("sessions/<int:session_id>/lab/live/", views.live_status, name="lab-live"),
    path("sessions/<int:session_id>/lab/live/estimate/", views.live_estimate, name="lab-live-estimate"),
    path("sessions/<int:session_id>/lab/live/start/", views.live_start, name="lab-live-start"),
    path("sessions/<int:session_id>/lab/live/<int:run_id>/stop/", views.live_stop, name="lab-live-stop"),
    re_path(r"^sessions/(?P<session_id>\d+)/lab\.(?P<fmt>json|csv)$", views.lab_export, name="lab-export"),
]
