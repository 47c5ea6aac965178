from django.apps import AppConfig


class MlmodelsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mlmodels"
    verbose_name = "Models"
