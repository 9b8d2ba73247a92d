#!/usr/bin/env python3
"""Check what an nndl_fast sdist or wheel contains.

    python tools/check_dist.py dist/nndl_fast-0.1.0.tar.gz dist/nndl_fast-*.whl
    python tools/check_dist.py --vendored-openmp wheelhouse/*manylinux*.whl

The sdist must hold everything needed to build and test from scratch (the
``.pyx``/``.pxd`` sources, ``src_c``, ``setup.py``, README, LICENSE, tests,
bench) and no build output (Cython's generated ``.c``, objects, extension
modules). A wheel must hold one compiled module per ``.pyx``, the Python
modules, the bundled MNIST with its README, and no sources or leftovers.
Exits 1 and lists every problem when a check fails.
"""
import argparse
import fnmatch
import os
import posixpath
import sys
import tarfile
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DATA_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "README.md"]

# Never in any distribution.
BUILD_OUTPUT = ["*.so", "*.pyd", "*.dylib", "*.o", "*.obj", "*.pyc", "*/__pycache__/*",
                "build/*", "*.html"]


def repo_sources(repo=REPO):
    """What the checkout says must be shipped: pyx/pxd names, src_c files, bench files."""
    def listing(folder, patterns):
        path = os.path.join(repo, folder)
        if not os.path.isdir(path):
            return []
        return sorted(f for f in os.listdir(path)
                      if any(fnmatch.fnmatch(f, p) for p in patterns))
    return {
        "pyx": listing("nndl_fast", ["_*.pyx"]),
        "pxd": listing("nndl_fast", ["*.pxd"]),
        "src_c": listing("src_c", ["*.c", "*.h"]),
        "bench": listing("bench", ["*.py"]),
        "tests": listing("tests", ["*.py"]),
    }


def _matches(name, patterns):
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def sdist_problems(names, expected):
    """Problems with an sdist whose members (without the top folder) are ``names``."""
    names = set(names)
    problems = []
    required = ["setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in",
                "PKG-INFO", "nndl_fast/__init__.py", "nndl_fast/_version.py",
                "nndl_fast/reference/__init__.py"]
    required += ["nndl_fast/" + f for f in expected["pyx"] + expected["pxd"]]
    required += ["src_c/" + f for f in expected["src_c"]]
    required += ["bench/" + f for f in expected["bench"]]
    required += ["tests/" + f for f in expected["tests"]]
    required += ["nndl_fast/data/" + f for f in DATA_FILES]
    problems += ["missing %s" % r for r in required if r not in names]
    for name in sorted(names):
        if _matches(name, BUILD_OUTPUT):
            problems.append("build output %s" % name)
        elif fnmatch.fnmatch(name, "nndl_fast/*.c") or fnmatch.fnmatch(name, "nndl_fast/*.cpp"):
            problems.append("Cython-generated C %s (the sdist must cythonize on build)" % name)
        elif name.startswith(("dist/", "wheelhouse/", "bench/results/", ".git/")):
            problems.append("not a source file: %s" % name)
    return problems


def wheel_problems(names, expected, metadata, vendored_openmp=False):
    """Problems with a wheel whose members are ``names`` and METADATA text ``metadata``."""
    names = set(names)
    problems = []
    required = ["nndl_fast/__init__.py", "nndl_fast/_version.py", "nndl_fast/network.py",
                "nndl_fast/mnist_loader.py", "nndl_fast/_config.py", "nndl_fast/_fallback.py",
                "nndl_fast/reference/__init__.py", "nndl_fast/reference/network.py"]
    required += ["nndl_fast/data/" + f for f in DATA_FILES]
    problems += ["missing %s" % r for r in required if r not in names]
    for pyx in expected["pyx"]:
        stem = "nndl_fast/" + pyx[:-len(".pyx")]
        if not any(fnmatch.fnmatch(n, stem + ".*.so") or fnmatch.fnmatch(n, stem + ".*.pyd")
                   or n in (stem + ".so", stem + ".pyd") for n in names):
            problems.append("missing compiled module for %s" % pyx)
    vendored = [n for n in names if n.startswith("nndl_fast.libs/")
                or n.startswith("nndl_fast/.dylibs/") or n.startswith("nndl_fast.libs\\")]
    for name in sorted(names):
        if name in vendored:
            continue
        if name.endswith((".pyx", ".c", ".cpp", ".h", ".o", ".obj", ".pyc", ".html")):
            problems.append("source or build leftover %s" % name)
        elif "/__pycache__/" in name or name.startswith(("build/", "tests/", "bench/", "src_c/")):
            problems.append("not part of the package: %s" % name)
        elif not (name.startswith("nndl_fast/") or ".dist-info/" in name):
            problems.append("unexpected top-level file %s" % name)
    if vendored_openmp and not any(os.path.basename(n).startswith(("libgomp", "libomp", "vcomp"))
                                   for n in vendored):
        problems.append("the OpenMP runtime is not vendored (no libgomp/libomp/vcomp in %s)"
                        % (sorted(vendored) or "the wheel"))
    if metadata is None:
        problems.append("no .dist-info/METADATA")
    else:
        for needle in ("Name: nndl_fast", "License-Expression: MIT", "License-File: LICENSE",
                       "Requires-Dist: numpy", "Requires-Dist: scipy",
                       "Requires-Dist: threadpoolctl", "Yann LeCun", "CC BY-SA 3.0",
                       "Classifier: Programming Language :: Cython"):
            if needle not in metadata:
                problems.append("METADATA lacks %r" % needle)
    return problems


def _sdist_members(path):
    with tarfile.open(path) as tar:
        members = [m.name for m in tar.getmembers() if m.isfile()]
    top = {m.split("/", 1)[0] for m in members}
    if len(top) != 1:
        raise ValueError("%s: expected a single top folder, got %s" % (path, sorted(top)))
    return [m.split("/", 1)[1] for m in members if "/" in m]


def _wheel_members(path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        meta = [n for n in names if posixpath.basename(n) == "METADATA" and
                n.split("/")[0].endswith(".dist-info")]
        metadata = zf.read(meta[0]).decode("utf-8") if meta else None
    return names, metadata


def check(path, vendored_openmp=False, expected=None):
    expected = expected or repo_sources()
    if path.endswith(".whl"):
        names, metadata = _wheel_members(path)
        return wheel_problems(names, expected, metadata, vendored_openmp)
    if path.endswith((".tar.gz", ".tgz")):
        return sdist_problems(_sdist_members(path), expected)
    return ["%s: not an sdist (.tar.gz) or a wheel (.whl)" % path]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="sdists and wheels to check")
    parser.add_argument("--vendored-openmp", action="store_true",
                        help="wheels must carry the OpenMP runtime (repaired wheels)")
    args = parser.parse_args(argv)
    failed = False
    for path in args.paths:
        problems = check(path, args.vendored_openmp)
        if problems:
            failed = True
            print("FAIL %s" % path)
            for p in problems:
                print("  - %s" % p)
        else:
            print("ok   %s" % path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
