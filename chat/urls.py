from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("ask/", views.ask, name="ask"),
    path("ask/stream/", views.ask_stream, name="ask_stream"),
    path("conversations/<int:conversation_id>/", views.conversation, name="conversation"),
    path(
        "conversations/<int:conversation_id>/rename/", views.conversation_rename, name="conversation_rename"
    ),
    path(
        "conversations/<int:conversation_id>/delete/", views.conversation_delete, name="conversation_delete"
    ),
    path("messages/<int:message_id>/feedback/", views.feedback, name="feedback"),
    path("passages/<int:citation_id>/", views.passage, name="passage"),
    path("analytics/", views.analytics, name="analytics"),
]
