"""Packaging: version, metadata, shipped data, distribution contents, OpenMP flags."""
import ast
import importlib.metadata
import os
import sys
import sysconfig

import pytest

import nndl_fast

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)
PKG_DIR = os.path.dirname(os.path.abspath(nndl_fast.__file__))


def _load_tool(name):
    """tools/NAME.py from the checkout, as a module."""
    import importlib.util
    path = os.path.join(REPO, "tools", name + ".py")
    if not os.path.exists(path):
        pytest.skip("no checkout next to the tests (%s missing)" % path)
    spec = importlib.util.spec_from_file_location("nndl_fast_tools_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _installed_distribution():
    """The installed nndl_fast distribution if it is the package imported here, else None."""
    try:
        dist = importlib.metadata.distribution("nndl_fast")
    except importlib.metadata.PackageNotFoundError:
        return None
    located = os.path.abspath(str(dist.locate_file("nndl_fast/__init__.py")))
    if os.path.exists(located) and os.path.samefile(located, nndl_fast.__file__):
        return dist
    return None


def test_installed_package_is_used():
    """Under tools/test_installed_wheel.sh the tests must import the installed wheel."""
    if os.environ.get("NNDL_FAST_EXPECT_INSTALLED") != "1":
        pytest.skip("only checked when NNDL_FAST_EXPECT_INSTALLED=1")
    site_dirs = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    here = os.path.realpath(PKG_DIR)
    assert os.path.dirname(here) in site_dirs, (here, site_dirs)
    assert not here.startswith(os.path.realpath(REPO) + os.sep), here
    assert _installed_distribution() is not None
    from nndl_fast import _config, _dense
    assert os.path.realpath(os.path.dirname(_dense.__file__)) == here
    assert not _config.pure_python()


def test_version_single_sourced():
    from nndl_fast import _version
    assert nndl_fast.__version__ == _version.__version__
    parts = nndl_fast.__version__.split(".")
    assert len(parts) >= 3 and all(p.isdigit() for p in parts[:3]), nndl_fast.__version__
    pyproject = os.path.join(REPO, "pyproject.toml")
    if not os.path.exists(pyproject):
        pytest.skip("no checkout next to the tests")
    text = open(pyproject, encoding="utf-8").read()
    assert 'dynamic = ["version"]' in text
    assert 'version = {attr = "nndl_fast._version.__version__"}' in text
    setup_src = open(os.path.join(REPO, "setup.py"), encoding="utf-8").read()
    assert "version=" not in setup_src.replace(" ", "")


def test_installed_metadata_version_matches():
    dist = _installed_distribution()
    if dist is None:
        pytest.skip("nndl_fast is imported from a source tree, not an installed distribution")
    assert importlib.metadata.version("nndl_fast") == nndl_fast.__version__
    meta = dist.metadata
    assert meta["License-Expression"] == "MIT"
    assert "Yann LeCun" in meta["Description"] or "Yann LeCun" in str(dist.read_text("METADATA"))
    assert any(c.startswith("Programming Language :: Cython")
               for c in meta.get_all("Classifier"))


def test_data_readme_shipped_with_the_data():
    data_dir = os.path.join(PKG_DIR, "data")
    text = open(os.path.join(data_dir, "README.md"), encoding="utf-8").read()
    for needle in ("Yann LeCun", "Corinna Cortes", "Christopher J.C. Burges", "CC BY-SA 3.0"):
        assert needle in text
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in text and os.path.exists(os.path.join(data_dir, name))


def test_license_file_and_readme_attribution():
    if not os.path.exists(os.path.join(REPO, "LICENSE")):
        pytest.skip("no checkout next to the tests")
    lic = open(os.path.join(REPO, "LICENSE"), encoding="utf-8").read()
    assert lic.startswith("MIT License")
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    assert "CC BY-SA 3.0" in readme and "Corinna Cortes" in readme


# --- tools/check_dist.py on member lists -------------------------------------

EXPECTED = {"pyx": ["_dense.pyx", "_blas.pyx"], "pxd": ["_blas.pxd"],
            "src_c": ["dense.c"], "bench": ["bench_network.py"],
            "tests": ["conftest.py", "test_x.py"]}
DATA = ["nndl_fast/data/" + f for f in (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz", "README.md")]
GOOD_SDIST = ["setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "PKG-INFO",
              "nndl_fast/__init__.py", "nndl_fast/_version.py", "nndl_fast/reference/__init__.py",
              "nndl_fast/_dense.pyx", "nndl_fast/_blas.pyx", "nndl_fast/_blas.pxd",
              "src_c/dense.c", "bench/bench_network.py", "tests/conftest.py", "tests/test_x.py",
              "nndl_fast.egg-info/SOURCES.txt"] + DATA
GOOD_WHEEL = ["nndl_fast/__init__.py", "nndl_fast/_version.py", "nndl_fast/network.py",
              "nndl_fast/mnist_loader.py", "nndl_fast/_config.py", "nndl_fast/_fallback.py",
              "nndl_fast/reference/__init__.py", "nndl_fast/reference/network.py",
              "nndl_fast/_blas.pxd",
              "nndl_fast/_dense.cpython-311-x86_64-linux-gnu.so",
              "nndl_fast/_blas.cpython-311-x86_64-linux-gnu.so",
              "nndl_fast-0.1.0.dist-info/METADATA", "nndl_fast-0.1.0.dist-info/RECORD",
              "nndl_fast-0.1.0.dist-info/licenses/LICENSE"] + DATA
GOOD_METADATA = ("Name: nndl_fast\nLicense-Expression: MIT\nLicense-File: LICENSE\n"
                 "Classifier: Programming Language :: Cython\n"
                 "Requires-Dist: numpy>=1.24\nRequires-Dist: scipy>=1.11\n"
                 "Requires-Dist: threadpoolctl>=3.1\n\nMNIST by Yann LeCun ... CC BY-SA 3.0\n")


def test_check_dist_sdist_rules():
    cd = _load_tool("check_dist")
    assert cd.sdist_problems(GOOD_SDIST, EXPECTED) == []
    bad = GOOD_SDIST + ["nndl_fast/_dense.c", "nndl_fast/_dense.cpython-311-x86_64-linux-gnu.so",
                        "build/temp/x.o"]
    bad.remove("src_c/dense.c")
    bad.remove("tests/conftest.py")
    problems = "\n".join(cd.sdist_problems(bad, EXPECTED))
    assert "Cython-generated C nndl_fast/_dense.c" in problems
    assert "build output nndl_fast/_dense.cpython" in problems
    assert "build output build/temp/x.o" in problems
    assert "missing src_c/dense.c" in problems and "missing tests/conftest.py" in problems


def test_check_dist_wheel_rules():
    cd = _load_tool("check_dist")
    assert cd.wheel_problems(GOOD_WHEEL, EXPECTED, GOOD_METADATA) == []
    assert "the OpenMP runtime is not vendored" in " ".join(
        cd.wheel_problems(GOOD_WHEEL, EXPECTED, GOOD_METADATA, vendored_openmp=True))
    repaired = GOOD_WHEEL + ["nndl_fast.libs/libgomp-a34b3233.so.1.0.0"]
    assert cd.wheel_problems(repaired, EXPECTED, GOOD_METADATA, vendored_openmp=True) == []
    bad = [n for n in GOOD_WHEEL if "_blas.cpython" not in n and "README.md" not in n]
    bad += ["nndl_fast/_dense.c", "nndl_fast/_dense.pyx", "tests/test_x.py",
            "nndl_fast/__pycache__/network.cpython-311.pyc"]
    problems = "\n".join(cd.wheel_problems(bad, EXPECTED, GOOD_METADATA.replace("CC BY-SA", "")))
    for needle in ("missing compiled module for _blas.pyx", "missing nndl_fast/data/README.md",
                   "leftover nndl_fast/_dense.c", "leftover nndl_fast/_dense.pyx",
                   "not part of the package: tests/test_x.py", "__pycache__",
                   "METADATA lacks 'CC BY-SA 3.0'"):
        assert needle in problems, (needle, problems)
    assert "no .dist-info/METADATA" in cd.wheel_problems(GOOD_WHEEL, EXPECTED, None)


def test_check_dist_knows_this_checkout():
    cd = _load_tool("check_dist")
    found = cd.repo_sources()
    assert "_dense.pyx" in found["pyx"] and "_blas.pxd" in found["pxd"]
    assert "test_packaging.py" in found["tests"]


# --- setup.py's OpenMP flags --------------------------------------------------

def _setup_functions():
    """openmp_candidates and _libomp_prefixes from setup.py, without running setup()."""
    path = os.path.join(REPO, "setup.py")
    if not os.path.exists(path):
        pytest.skip("no checkout next to the tests")
    tree = ast.parse(open(path, encoding="utf-8").read())
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef)
              and node.name in ("openmp_candidates", "_libomp_prefixes")]
    assert len(wanted) == 2
    namespace = {}
    exec("import os, shutil, subprocess, sys", namespace)
    exec(compile(ast.Module(body=wanted, type_ignores=[]), path, "exec"), namespace)
    return namespace


def test_openmp_flags_per_compiler(tmp_path, monkeypatch):
    fns = _setup_functions()
    assert fns["openmp_candidates"]("msvc", "win32") == [(["/openmp"], [])]
    assert fns["openmp_candidates"]("unix", "linux") == [(["-fopenmp"], ["-fopenmp"])]
    prefix = tmp_path / "libomp"
    (prefix / "include").mkdir(parents=True)
    (prefix / "include" / "omp.h").write_text("")
    monkeypatch.setenv("NNDL_FAST_LIBOMP_PREFIX", str(prefix))
    darwin = fns["openmp_candidates"]("unix", "darwin")
    cflags, lflags = darwin[0]
    assert cflags == ["-Xpreprocessor", "-fopenmp", "-I" + str(prefix / "include")]
    assert "-lomp" in lflags and "-L" + str(prefix / "lib") in lflags
    assert (["-Xpreprocessor", "-fopenmp"], ["-lomp"]) in darwin
    assert darwin[-1] == (["-fopenmp"], ["-fopenmp"])  # gcc / LLVM clang on macOS
    monkeypatch.setenv("NNDL_FAST_LIBOMP_PREFIX", str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") not in fns["_libomp_prefixes"]()


def test_cibuildwheel_configuration():
    path = os.path.join(REPO, "pyproject.toml")
    if not os.path.exists(path):
        pytest.skip("no checkout next to the tests")
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    cibw = cfg["tool"]["cibuildwheel"]
    assert "{project}/tests" in cibw["test-command"]
    assert "auditwheel repair" in cibw["linux"]["repair-wheel-command"]
    assert "libomp" in cibw["macos"]["before-all"]
    envs = [o.get("environment", {}) for o in cibw["overrides"] if "macosx" in o["select"]]
    assert envs and all("MACOSX_DEPLOYMENT_TARGET" in e for e in envs)
    assert "delvewheel" in cibw["windows"]["repair-wheel-command"]
    project = cfg["project"]
    assert project["license"] == "MIT" and "LICENSE" in project["license-files"]
    assert project["readme"] == "README.md"


def _built_package_dir():
    from importlib.machinery import EXTENSION_SUFFIXES
    here = os.path.dirname(nndl_fast.__file__)
    if not any(os.path.isfile(os.path.join(here, "_dense" + s)) for s in EXTENSION_SUFFIXES):
        pytest.skip("needs the compiled extensions")
    return here


def test_unbuilt_checkout_does_not_fall_back(tmp_path):
    """Started in a source checkout that was never built while a built copy is
    installed, Python imports the checkout's nndl_fast/ first: that must stop with
    an ImportError saying what to do, not train on the slow reference."""
    import shutil
    import subprocess
    built = _built_package_dir()
    site = tmp_path / "site"
    shutil.copytree(built, site / "nndl_fast",
                    ignore=shutil.ignore_patterns("*.pyx", "*.pxd", "*.c", "__pycache__"))
    checkout = tmp_path / "checkout"
    shutil.copytree(built, checkout / "nndl_fast",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    (checkout / "src_c").mkdir()
    (checkout / "setup.py").write_text("")
    # (An editable install's finder would load the missing extensions from its
    # own tree; an installed wheel has no such finder.)
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
            "if 'editable' not in getattr(f, '__module__', '')]; "
            "sys.path.insert(1, %r); "
            "from nndl_fast import network" % str(site))
    env = dict(os.environ)
    env.pop("NNDL_FAST_PUREPYTHON", None)
    ran = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=str(checkout),
                         capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode != 0
    assert "ImportError" in ran.stderr
    assert "not built" in ran.stderr and "pip install -e ." in ran.stderr
    assert str(site / "nndl_fast") in ran.stderr
    # From the installed copy alone (no checkout in the way) it imports compiled.
    code_ok = code.replace("from nndl_fast import network",
                           "from nndl_fast import network, _config; "
                           "assert not _config.pure_python(), _config.PURE_PYTHON_REASON")
    ran = subprocess.run([sys.executable, "-W", "error", "-c", code_ok], cwd=str(tmp_path),
                         capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0, ran.stderr
