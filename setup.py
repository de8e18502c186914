"""The optional C part of agentproto (the frame-record layout, see _speedups.c).

Everything else is in pyproject.toml. If the extension cannot be built (no C
compiler or Python headers), the install goes on without it and the readers
use their NumPy and cbor2 paths, which give the same results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "agentproto._speedups",
            ["src/agentproto/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
