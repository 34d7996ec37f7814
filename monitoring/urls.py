from django.urls import path

from . import views

app_name = "monitoring"

urlpatterns = [
    path("job-runs/", views.jobrun_list, name="jobrun_list"),
    path("job-runs/<int:pk>/", views.jobrun_detail, name="jobrun_detail"),
    path("job-runs/<int:pk>/progress/", views.jobrun_progress, name="jobrun_progress"),
]
