"""Builds the optional native CPU kernels (src/predsparse/nn/_native.c); everything else is in pyproject.toml.

The extension is `optional`: where no C compiler (or no OpenMP) is found, the install goes on without it
and predsparse uses its torch formulations instead (`predsparse.nn.native.STATUS` says which and why).
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildNative(build_ext):
    """Tries with OpenMP first, then without (one thread), then gives up with a one-line reason."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: retry single-threaded
            if "-fopenmp" not in ext.extra_compile_args:
                raise
            print(f"predsparse: building the native kernels with OpenMP failed ({exc}); retrying without it")
            ext.extra_compile_args = [a for a in ext.extra_compile_args if a != "-fopenmp"]
            ext.extra_link_args = [a for a in ext.extra_link_args if a != "-fopenmp"]
            super().build_extension(ext)


native = Extension(
    "predsparse.nn._native",
    sources=["src/predsparse/nn/_native.c"],
    depends=["src/predsparse/nn/_native_kernels.h", "src/predsparse/nn/_native_step.h"],
    # -O3 vectorises the fixed-length loops; contraction (a + w * x as one FMA) is the C default of GCC.
    extra_compile_args=["-O3", "-fopenmp", "-std=gnu11"],
    extra_link_args=["-fopenmp"],
    optional=os.environ.get("PREDSPARSE_REQUIRE_NATIVE") != "1",
)

setup(ext_modules=[native], cmdclass={"build_ext": BuildNative})
