from django.urls import path, re_path

from . import views

urlpatterns = [
    path("sessions/<int:session_id>/lab/", views.lab, name="lab"),
    path("sessions/<int:session_id>/lab/shapes/", views.lab_shapes, name="lab-shapes"),
    re_path(r"^sessions/(?P<session_id>\d+)/lab\.(?P<fmt>json|csv)$", views.lab_export, name="lab-export"),
]
