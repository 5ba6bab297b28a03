"""Build of the optional compiled QRS kernel; everything else is in pyproject.toml.

The extension is optional: without a C compiler and the Python headers (on Raspberry Pi OS:
``sudo apt install gcc python3-dev``) the install still succeeds and the detector runs its
numpy code, which gives the same beats, more slowly.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dsp._qrs_kernel",
            ["dsp/_qrs_kernel.c"],
            optional=True,
            extra_compile_args=["-O2", "-fno-fast-math", "-ffp-contract=off"],
        )
    ]
)
