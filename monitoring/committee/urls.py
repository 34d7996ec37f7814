"""Routes of the committee pages, added to the monitoring namespace."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("committee/", views.committee_inbox, name="committee_inbox"),
    path("committee/ratify/", views.committee_ratify, name="committee_ratify"),
    path("committee/proposals/<int:pk>/", views.proposal_detail, name="proposal_detail"),
    path("committee/proposals/<int:pk>/vote/", views.proposal_vote, name="proposal_vote"),
    path(
        "committee/proposals/<int:pk>/withdraw/",
        views.proposal_withdraw,
        name="proposal_withdraw",
    ),
    path("loans/<int:pk>/proposals/new/", views.proposal_create, name="proposal_create"),
]
