"""Build script: the Cython extension list and an OpenMP probe.

Every ``nndl_fast/_NAME.pyx`` becomes the extension ``nndl_fast._NAME``; if a
plain-C file ``src_c/NAME.c`` exists it is compiled into the same extension.

Environment switches:

``NNDL_FAST_DEBUG_CHECKS=1``
    turn Cython's bounds and wrap-around checks back on (debugging builds).
``NNDL_FAST_NO_OPENMP=1``
    build without OpenMP (the kernels then run serially).
``NNDL_FAST_LIBOMP_PREFIX=/path``
    macOS: where libomp's include/ and lib/ are (default: ``brew --prefix libomp``,
    then /opt/homebrew/opt/libomp and /usr/local/opt/libomp).
``NNDL_FAST_CROSS_COMPILING=1``
    build the OpenMP probe program but do not run it.
``NNDL_FAST_SANITIZE=address``
    compile and link with ``-fsanitize=address`` (see tools/asan_check.sh).
"""
import os
import shutil
import subprocess
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


def _libomp_prefixes():
    """Where a Homebrew (or user-chosen) libomp may live on macOS, best first."""
    prefixes = []
    env = os.environ.get("NNDL_FAST_LIBOMP_PREFIX")
    if env:
        prefixes.append(env)
    brew = shutil.which("brew")
    if brew:
        try:
            out = subprocess.run([brew, "--prefix", "libomp"], capture_output=True,
                                 text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip():
                prefixes.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    prefixes += ["/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"]
    seen = []
    for p in prefixes:
        if p not in seen and os.path.isfile(os.path.join(p, "include", "omp.h")):
            seen.append(p)
    return seen


def openmp_candidates(compiler_type, platform=None):
    """(compile_args, link_args) pairs to try for this compiler, in order."""
    platform = platform or sys.platform
    if compiler_type == "msvc":
        # MSVC's OpenMP 2.0 runtime (vcomp); nothing to add at link time.
        return [(["/openmp"], [])]
    candidates = []
    if platform == "darwin":
        # Apple clang has no -fopenmp driver flag: it needs the preprocessor flag
        # and Homebrew's libomp, whose prefix is not on the default search paths.
        for prefix in _libomp_prefixes():
            inc, lib = os.path.join(prefix, "include"), os.path.join(prefix, "lib")
            candidates.append((["-Xpreprocessor", "-fopenmp", "-I" + inc],
                               ["-L" + lib, "-lomp", "-Wl,-rpath," + lib]))
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    # gcc, and clang with libomp installed (Linux, or a non-Apple clang/gcc on macOS).
    candidates.append((["-fopenmp"], ["-fopenmp"]))
    return candidates


class BuildExtWithOpenMP(build_ext):
    """build_ext that probes for OpenMP once and adds its flags if it works."""

    def _try_openmp(self, cflags, lflags):
        """None if a small OpenMP program compiles, links and runs with these flags,
        else the reason it did not."""
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
                text = str(exc).strip()
                return text.splitlines()[-1] if text else type(exc).__name__
            exe = os.path.join(tmp, self.compiler.executable_filename("probe_openmp"))
            # Run it only when it was built for this machine (not cross-compiling).
            if os.path.exists(exe) and not os.environ.get("NNDL_FAST_CROSS_COMPILING"):
                try:
                    ran = subprocess.run([exe], capture_output=True, timeout=60)
                except (OSError, subprocess.SubprocessError) as exc:
                    return "the OpenMP test program could not run (%s)" % exc
                if ran.returncode != 0:
                    return "the OpenMP test program failed (exit %d)" % ran.returncode
        return None

    def _probe_openmp(self):
        if os.environ.get("NNDL_FAST_NO_OPENMP", "0") not in ("", "0"):
            return None, "disabled by NNDL_FAST_NO_OPENMP"
        reasons = []
        for cflags, lflags in openmp_candidates(self.compiler.compiler_type):
            reason = self._try_openmp(cflags, lflags)
            if reason is None:
                return (cflags, lflags), None
            reasons.append("%s: %s" % (" ".join(cflags), reason))
        return None, "the compiler could not build an OpenMP program (%s)" % "; ".join(reasons)

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
                # No code here reads the floating-point exception flags; without
                # trapping math the compiler may if-convert (and so vectorise) the
                # kernels' clamps and selects.
                ext.extra_compile_args += ["-O3", "-fno-trapping-math"]
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
            # a header edit rebuilds the extensions (setuptools only follows sources)
            depends=sorted(glob(os.path.join("src_c", "*.h"))),
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
