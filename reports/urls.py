from django.urls import path

from . import views, views_audit, views_dashboards, views_monthly

app_name = "reports"

urlpatterns = [
    path("", views.portfolio, name="portfolio"),
    path("dashboard/", views_dashboards.dashboard, name="dashboard"),
    path("audit/", views_audit.audit_trail, name="audit_trail"),
    path("audit/export.csv", views_audit.audit_export, name="audit_export"),
    path("monthly/", views_monthly.report_list, name="monthly_report_list"),
    path("monthly/generate/", views_monthly.report_generate, name="monthly_report_generate"),
    path("monthly/<int:pk>/", views_monthly.report_detail, name="monthly_report_detail"),
    path(
        "monthly/<int:pk>/progress/",
        views_monthly.report_progress,
        name="monthly_report_progress",
    ),
    path(
        "monthly/<int:pk>/download/<str:file_format>/",
        views_monthly.report_download,
        name="monthly_report_download",
    ),
]
