from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("", include("reports.urls")),
    path("loans/", include("loans.urls")),
    path("monitoring/", include("monitoring.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

# Uploaded files are never served by URL, not even in development: documents
# are downloaded through a view that checks the user's right to the record.
