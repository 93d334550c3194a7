"""Production: everything from the environment, SECRET_KEY required."""
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .env import read

if not SECRET_KEY:  # noqa: F405
    raise ImproperlyConfigured("SECRET_KEY must be set in the environment for production settings")
DEBUG = False
SESSION_COOKIE_SECURE = read("SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = read("CSRF_COOKIE_SECURE")
SECURE_CONTENT_TYPE_NOSNIFF = True
