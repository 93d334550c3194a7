"""Production: everything from the environment, SECRET_KEY required."""
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403

if not SECRET_KEY:  # noqa: F405
    raise ImproperlyConfigured("SECRET_KEY must be set in the environment for production settings")
DEBUG = False
SESSION_COOKIE_SECURE = env("SESSION_COOKIE_SECURE", default=True)  # noqa: F405
CSRF_COOKIE_SECURE = env("CSRF_COOKIE_SECURE", default=True)  # noqa: F405
SECURE_CONTENT_TYPE_NOSNIFF = True
