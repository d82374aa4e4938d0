"""A one-file Django project (WSGI) that answers how many request body bytes it read, and their sha256."""

from __future__ import annotations

import hashlib

from django.conf import settings

settings.configure(DEBUG=False, SECRET_KEY="test-only", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
                   MIDDLEWARE=[], DATA_UPLOAD_MAX_MEMORY_SIZE=None)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


@csrf_exempt
def upload(request) -> HttpResponse:
    data = request.body
    return HttpResponse(f"{len(data)} {hashlib.sha256(data).hexdigest()}\n", content_type="text/plain")


urlpatterns = [path("upload", upload)]
application = get_wsgi_application()
