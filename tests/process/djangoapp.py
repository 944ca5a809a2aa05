"""A one-module Django project for the framework tests: banyan's app, one record per request."""

from __future__ import annotations

import os

import django  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]
from django.core.wsgi import get_wsgi_application  # type: ignore[import-untyped]
from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped]
from django.urls import path  # type: ignore[import-untyped]
from prockit import options_from_env

settings.configure(
    DEBUG=False, SECRET_KEY="test-only", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
    INSTALLED_APPS=["banyan.integrations.django"], MIDDLEWARE=[],
    BANYAN={"atexit_timeout": 5.0, **options_from_env()},
)  # fmt: skip
django.setup()

import banyan  # noqa: E402 - after django.setup(), as a project's views would be


def index(request: HttpRequest) -> HttpResponse:
    """Log the request's ``n`` as the record's input; answer the pid."""
    n = request.GET.get("n", "")
    ok = banyan.log_prompt(input=f"request n={n}", output=str(os.getpid()))
    return HttpResponse(str(os.getpid()), status=200 if ok else 500)


urlpatterns = [path("", index)]
application = get_wsgi_application()
