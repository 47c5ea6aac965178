from django.urls import path

from mlmodels import views

app_name = "mlmodels"

urlpatterns = [
    path("", views.index, name="index"),
    path("digits/", views.digits, name="digits"),
    path("titanic/", views.titanic, name="titanic"),
    path("versions/<int:version_id>/", views.version, name="version"),
    path("versions/<int:version_id>/<str:name>.png", views.version_plot, name="version_plot"),
    path("compare/<str:kind>/", views.compare, name="compare"),
    path("mnist/mistakes/", views.mistakes, name="mistakes"),
    path("mnist/test-digits/<int:index>.png", views.mnist_digit, name="mnist_digit"),
]
