from django.urls import path

from . import views

urlpatterns = [
    path("", views.keys, name="keys"),
    path("<slug:provider_slug>/", views.key_save, name="key-save"),
    path("<slug:provider_slug>/delete/", views.key_delete, name="key-delete"),
]
