from django.urls import path

app_name = "mlmodels"

urlpatterns: list = []  # type: ignore[type-arg]
