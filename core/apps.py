from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The ground floor every app may import: the domain errors and their HTTP mapping, API tokens, the page-error
    middleware, the validators of names, and the job helpers. It imports no app, and nothing from `config`."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "core"
    verbose_name = "Core"
