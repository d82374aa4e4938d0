"""Build config for the optional C part; everything else is in pyproject.toml.

sockserve.master._native (the rr policy and the master's hand-off hot path in C)
is optional: without a C compiler or Python headers the build goes on without it
and sockserve runs round_robin.py and the Python hand-off path (see native.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "sockserve.master._native",
    sources=["sockserve/master/_native.c", "sockserve/master/native_io.c",
             "sockserve/master/native_acks.c", "sockserve/master/rr_core.c"],
    depends=["sockserve/master/native.h", "sockserve/master/rr_core.h"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
    optional=True,  # no compiler: install without it (pure-Python fallback)
)])
