from django.urls import path

from . import views, views_documents

app_name = "loans"

urlpatterns = [
    path("", views.loan_list, name="loan_list"),
    path("export.csv", views.loan_export, name="loan_export"),
    path("<int:pk>/", views.loan_detail, name="loan_detail"),
    path("borrowers/", views.borrower_list, name="borrower_list"),
    path("borrowers/<int:pk>/", views.borrower_detail, name="borrower_detail"),
    path(
        "documents/upload/<str:kind>/<int:pk>/",
        views_documents.document_upload,
        name="document_upload",
    ),
    path("documents/<int:pk>/", views_documents.document_detail, name="document_detail"),
    path(
        "documents/versions/<int:pk>/download/",
        views_documents.document_download,
        name="document_download",
    ),
]
