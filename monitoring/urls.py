from django.urls import path

from . import views, views_network, views_signals, views_warnings
from .committee import urls as committee_urls
from .inspections import views as views_inspections
from .meetings import urls as meeting_urls

app_name = "monitoring"

urlpatterns = [
    path("job-runs/", views.jobrun_list, name="jobrun_list"),
    path("job-runs/<int:pk>/", views.jobrun_detail, name="jobrun_detail"),
    path("job-runs/<int:pk>/progress/", views.jobrun_progress, name="jobrun_progress"),
    path("warnings/", views_warnings.warning_queue_view, name="warning_queue"),
    path("warnings/assign/", views_warnings.warning_bulk_assign, name="warning_bulk_assign"),
    path("warnings/<int:pk>/", views_warnings.warning_detail, name="warning_detail"),
    path("warnings/<int:pk>/action/", views_warnings.warning_action, name="warning_action"),
    path("notifications/", views_warnings.notification_list, name="notifications"),
    path(
        "notifications/read/",
        views_warnings.notification_mark_read,
        name="notification_mark_read",
    ),
    path("signals/", views_signals.signal_list, name="signal_list"),
    path("signals/<int:pk>/end/", views_signals.signal_end, name="signal_end"),
    path(
        "signals/watched-industries/",
        views_signals.watched_industry_list,
        name="signal_watched_industries",
    ),
    path("borrowers/<int:pk>/signals/", views_signals.borrower_signals, name="borrower_signals"),
    path("borrowers/<int:pk>/signals/new/", views_signals.signal_create, name="signal_create"),
    path("borrowers/<int:pk>/network/", views_network.borrower_network, name="borrower_network"),
    path("tasks/", views_inspections.my_tasks, name="my_tasks"),
    path(
        "inspections/compliance/",
        views_inspections.inspection_compliance,
        name="inspection_compliance",
    ),
    path("inspections/<int:pk>/", views_inspections.inspection_detail, name="inspection_detail"),
    path(
        "inspections/<int:pk>/review/",
        views_inspections.inspection_review,
        name="inspection_review",
    ),
    path(
        "loans/<int:pk>/inspections/new/",
        views_inspections.inspection_start,
        name="inspection_start",
    ),
]

# The committee and meeting pages keep their routes in their own packages,
# under this app's namespace.
urlpatterns += committee_urls.urlpatterns + meeting_urls.urlpatterns
