from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from config import health
from config.api import api
from knowledge import api_rest as knowledge_rest

# The resource API (DRF): every app registers its viewsets on this one router, whose root is /api/.
router = DefaultRouter()
router.register("collections", knowledge_rest.CollectionViewSet, basename="collection")
router.register("documents", knowledge_rest.DocumentViewSet, basename="document")

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="rest-schema"),
    path("api/schema/docs/", SpectacularSwaggerView.as_view(url_name="rest-schema"), name="rest-docs"),
    path("api/", include(router.urls)),
    path("api/", api.urls),
    path("models/", include("mlmodels.urls")),
    path("", include("chat.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
