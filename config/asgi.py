import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
# The web server (gunicorn with uvicorn workers) runs views on a pool of threads: connections come from a
# bounded pool per process rather than one persistent connection per thread (see DATABASES in the settings).
os.environ.setdefault("DJANGO_DB_POOL_MAX_SIZE", "8")

application = get_asgi_application()
