"""Routes of the meetings pages, added to the monitoring namespace."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("meetings/", views.meeting_list, name="meeting_list"),
    path("meetings/new/", views.meeting_create, name="meeting_create"),
    path("meetings/<int:pk>/", views.meeting_detail, name="meeting_detail"),
    path("meetings/<int:pk>/edit/", views.meeting_edit, name="meeting_edit"),
    path("meetings/<int:pk>/held/", views.meeting_mark_held, name="meeting_mark_held"),
    path("meetings/<int:pk>/close/", views.meeting_close, name="meeting_close"),
    path("meetings/<int:pk>/minutes.pdf", views.meeting_minutes_pdf, name="meeting_minutes_pdf"),
    path("meetings/<int:pk>/agenda/", views.meeting_agenda, name="meeting_agenda"),
    path(
        "meetings/<int:pk>/agenda/build/", views.meeting_agenda_build, name="meeting_agenda_build"
    ),
    path("meetings/<int:pk>/items/other/", views.meeting_item_other, name="meeting_item_other"),
    path("meetings/<int:pk>/items/<int:item_pk>/", views.meeting_item, name="meeting_item"),
    path(
        "meetings/<int:pk>/items/<int:item_pk>/decision/",
        views.meeting_item_decision,
        name="meeting_item_decision",
    ),
    path(
        "meetings/<int:pk>/items/<int:item_pk>/move/",
        views.meeting_item_move,
        name="meeting_item_move",
    ),
    path(
        "meetings/<int:pk>/items/<int:item_pk>/remove/",
        views.meeting_item_remove,
        name="meeting_item_remove",
    ),
]
