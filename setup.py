"""Build script: the Cython extension list and an OpenMP probe.

Every ``nndl_fast/_NAME.pyx`` becomes the extension ``nndl_fast._NAME``; if a
plain-C file ``src_c/NAME.c`` exists it is compiled into the same extension.

Environment switches:

``NNDL_FAST_DEBUG_CHECKS=1``
    turn Cython's bounds and wrap-around checks back on (debugging builds).
``NNDL_FAST_NO_OPENMP=1``
    build without OpenMP (the kernels then run serially).
``NNDL_FAST_SANITIZE=address``
    compile and link with ``-fsanitize=address`` (see tools/asan_check.sh).
"""
import os
import sys
import tempfile
import textwrap
from glob import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))

OPENMP_PROBE = textwrap.dedent("""
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
""")


def openmp_flags(compiler_type):
    """(compile_args, link_args) to try for this compiler family."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang needs the preprocessor flag and Homebrew's libomp.
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


class BuildExtWithOpenMP(build_ext):
    """build_ext that probes for OpenMP once and adds its flags if it works."""

    def _probe_openmp(self):
        if os.environ.get("NNDL_FAST_NO_OPENMP", "0") not in ("", "0"):
            return None, "disabled by NNDL_FAST_NO_OPENMP"
        cflags, lflags = openmp_flags(self.compiler.compiler_type)
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe_openmp.c")
            with open(src, "w") as f:
                f.write(OPENMP_PROBE)
            try:
                objs = self.compiler.compile([src], output_dir=tmp,
                                             extra_postargs=cflags)
                self.compiler.link_executable(objs, "probe_openmp",
                                              output_dir=tmp,
                                              extra_postargs=lflags)
            except Exception as exc:  # any compile or link failure
                return None, "the compiler could not build an OpenMP program (%s)" % (
                    str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__)
        return (cflags, lflags), None

    def build_extensions(self):
        flags, reason = self._probe_openmp()
        if flags is None:
            print("nndl_fast: building WITHOUT OpenMP: %s; kernels will run serially."
                  % reason)
        else:
            print("nndl_fast: OpenMP enabled (%s)" % " ".join(flags[0]))
        sanitize = os.environ.get("NNDL_FAST_SANITIZE", "")
        for ext in self.extensions:
            if flags is not None:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
                ext.define_macros.append(("NNDL_FAST_OPENMP", "1"))
            if self.compiler.compiler_type != "msvc":
                ext.extra_compile_args += ["-O3"]
                if sanitize:
                    ext.extra_compile_args += ["-fsanitize=" + sanitize,
                                               "-fno-omit-frame-pointer", "-g"]
                    ext.extra_link_args += ["-fsanitize=" + sanitize]
        super().build_extensions()


def extensions():
    exts = []
    for pyx in sorted(glob(os.path.join("nndl_fast", "_*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        sources = [pyx]
        c_file = os.path.join("src_c", name.lstrip("_") + ".c")
        if os.path.exists(os.path.join(HERE, c_file)):
            sources.append(c_file)
        exts.append(Extension(
            "nndl_fast." + name,
            sources=sources,
            include_dirs=[numpy.get_include(), "src_c"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        ))
    return exts


debug_checks = os.environ.get("NNDL_FAST_DEBUG_CHECKS", "0") not in ("", "0")
directives = {
    "language_level": 3,
    "boundscheck": debug_checks,
    "wraparound": debug_checks,
    "initializedcheck": debug_checks,
    "cdivision": True,
    "embedsignature": True,
}

setup(
    ext_modules=cythonize(extensions(), compiler_directives=directives,
                          annotate=os.environ.get("NNDL_FAST_ANNOTATE") == "1"),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
