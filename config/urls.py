from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from config import health
from config.api import api
from knowledge import api_rest as knowledge_rest


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers ask for /favicon.ico whatever the page says; the icon is a static file (resolved per request,
    since the hashed name exists only once collectstatic has run)."""
    return HttpResponseRedirect(static("favicon.svg"))


# The admin's lists (documents with status, progress and chunk counts) need the page's width: the app list is
# one click away on the admin's home page rather than a sidebar beside every list.
admin.site.enable_nav_sidebar = False
admin.site.site_header = "Knowledge base administration"
admin.site.site_title = "Knowledge base admin"

# The resource API (DRF): every app registers its viewsets on this one router, whose root is /api/.
router = DefaultRouter()
router.register("collections", knowledge_rest.CollectionViewSet, basename="collection")
router.register("documents", knowledge_rest.DocumentViewSet, basename="document")
router.register("sources", knowledge_rest.WebSourceViewSet, basename="websource")

urlpatterns = [
    path("favicon.ico", favicon),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="rest-schema"),
    path("api/schema/docs/", SpectacularSwaggerSplitView.as_view(url_name="rest-schema"), name="rest-docs"),
    path("api/", include(router.urls)),
    path("api/", api.urls),
    path("models/", include("mlmodels.urls")),
    path("", include("chat.urls")),
]
# Uploaded files are never served from MEDIA_ROOT, in any mode: originals go out only through the
# permission-checked download (`/api/documents/<id>/download/`).
