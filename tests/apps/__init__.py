"""Tiny apps the worker tests load (``tests.apps.sample:asgi_app`` ...)."""
