"""Settings split by environment: base (shared), local (make run), production, test.

Every value that comes from the environment is read through `qtweb.settings.env.env`.
"""
