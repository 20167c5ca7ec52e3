from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("playground.accounts.urls")),
    path("keys/", include("playground.providers.urls")),
    path("", include("playground.chat.urls")),
    path("", include("playground.lab.urls")),
]
