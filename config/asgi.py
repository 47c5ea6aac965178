import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
# The settings give this server its connections from a bounded pool per process (see DATABASES there).

application = get_asgi_application()
