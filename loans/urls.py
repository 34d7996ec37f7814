from django.urls import path

from . import views

app_name = "loans"

urlpatterns = [
    path("", views.loan_list, name="loan_list"),
    path("export.csv", views.loan_export, name="loan_export"),
    path("<int:pk>/", views.loan_detail, name="loan_detail"),
    path("borrowers/", views.borrower_list, name="borrower_list"),
    path("borrowers/<int:pk>/", views.borrower_detail, name="borrower_detail"),
]
