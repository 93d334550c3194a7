"""Quantum Trader project package and platform layer."""
from qtweb.celery import app as celery_app

__all__ = ("celery_app",)
