#!/usr/bin/env python3
"""Fuzz nndl_fast's file readers with atheris (libFuzzer for Python), for a bounded time.

    python tools/fuzz_loaders.py --seconds 25          # every reader, time split evenly
    python tools/fuzz_loaders.py --target npz --seconds 600
    python tools/fuzz_loaders.py --list

Readers (targets):

    idx       datasets.read_idx: an IDX file, raw or gzipped
    pickle    datasets.load_pickle: the book's mnist.pkl.gz, by the restricted unpickler
    network2  network2.load: the book's JSON network document
    network   network.load: the same document, chapter 1's cost
    npz       network3.load: network3's .npz archive

Each input is written to a file and read by the reader. A reader may only raise
its documented exception (``datasets.DataFileError``, ``network2.NetworkFileError``
or ``network3.NetworkFileError``, all ValueErrors); any other exception, a crash,
an input taking more than ``--input-timeout`` seconds or the process using more than
``--rss-limit-mb`` is a finding: libFuzzer stops, prints the traceback and writes
the input to ``--artifacts`` (``crash-*``, ``timeout-*``, ``oom-*``). Replay one
with ``python tools/fuzz_loaders.py --target T --replay FILE``.

The first byte of every input chooses how the rest is stored: odd, gzip-compressed
(so the parsers behind the decompression are reached with valid gzip streams);
even, as it is (so corrupt compressed data is tried too). Each target starts from
a corpus of valid files made here.

Without atheris (``pip install atheris``; it needs a CPython it has wheels for, or
clang to build) the script says so and exits with status 4.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

# Everything else is imported lazily: atheris instruments only the modules
# imported after it starts (nndl_fast, and the standard library's zip, gzip,
# pickle and json readers that nndl_fast's loaders run on).
# The IDX and pickle readers, the JSON and npz loaders (imported lazily, so that
# atheris can instrument them as they are imported).
TARGETS = ("idx", "pickle", "network2", "network", "npz")
SKIPPED = 4   # (libFuzzer itself exits with 77 on a finding)


def _modules():
    from nndl_fast import datasets, network, network2, network3
    return datasets, network, network2, network3


def expected_errors(target):
    """The exceptions a reader documents for a bad file."""
    datasets, _, network2, network3 = _modules()
    return {"idx": (datasets.DataFileError,), "pickle": (datasets.DataFileError,),
            "network2": (network2.NetworkFileError,), "network": (network2.NetworkFileError,),
            "npz": (network3.NetworkFileError,)}[target]


def read(target, path):
    """Read the file at ``path`` with the target's reader."""
    datasets, network, network2, network3 = _modules()
    if target == "idx":
        return datasets.read_idx(path)
    if target == "pickle":
        return datasets.load_pickle(path)
    if target == "network2":
        return network2.load(path)
    if target == "network":
        return network.load(path)
    return network3.load(path, num_threads=1)


def file_bytes(data):
    """What a fuzz input stores in the file (see the module docstring)."""
    import gzip
    if not data:
        return b""
    return gzip.compress(data[1:], mtime=0) if data[0] & 1 else data[1:]


def one_input(target, data, path):
    """Write ``data`` as a file at ``path`` and read it; documented errors pass."""
    with open(path, "wb") as f:
        f.write(file_bytes(data))
    try:
        read(target, path)
    except expected_errors(target):
        pass


# --- seed corpus ---------------------------------------------------------------------------

def _idx(arr, code):
    dims = b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return bytes([0, 0, code, arr.ndim]) + dims + arr.tobytes()


def _saved(save):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "file")
        save(path)
        with open(path, "rb") as f:
            return f.read()


def seeds(target):
    """Valid files of the target's format, as fuzz inputs (mode byte first)."""
    import pickle
    import numpy as np
    _, network, network2, network3 = _modules()
    rng = np.random.default_rng(0)
    state = np.random.get_state()
    np.random.seed(0)
    try:
        if target == "idx":
            files = [_idx(rng.integers(0, 256, (3, 4, 4), dtype=np.uint8), 0x08),
                     _idx(rng.integers(0, 10, 5, dtype=np.uint8), 0x08),
                     _idx(rng.random((2, 3)).astype(">f4"), 0x0D),
                     _idx(rng.integers(-5, 5, (2, 2, 2, 2)).astype(">i2"), 0x0B)]
        elif target == "pickle":
            parts = tuple((rng.random((n, 6)).astype(np.float32), rng.integers(0, 10, n))
                          for n in (4, 2, 3))
            files = [pickle.dumps(parts, protocol=2), pickle.dumps(parts, protocol=4)]
        elif target in ("network2", "network"):
            files = [_saved(network.Network([3, 4, 2]).save),
                     _saved(network2.Network([2, 3], cost=network2.CrossEntropyCost).save),
                     _saved(network2.Network([3, 2, 2],
                                             cost=network2.LogLikelihoodCost).save)]
        else:
            layers = [network3.ConvPoolLayer((2, 1, 3, 3), (2, 1, 6, 6), (2, 2)),
                      network3.FullyConnectedLayer(8, 3, network3.ReLU, p_dropout=0.5),
                      network3.SoftmaxLayer(3, 2)]
            files = [_saved(network3.Network(layers, 2).save),
                     _saved(network3.Network([network3.SoftmaxLayer(4, 3)], 1,
                                             dtype=np.float64).save)]
    finally:
        np.random.set_state(state)
    out = [b"\x00" + f for f in files]
    if target in ("idx", "pickle"):      # gzipped too, as MNIST and mnist.pkl.gz are
        out += [b"\x01" + f for f in files]
    return out


# --- one target under atheris --------------------------------------------------------------

def _limit_memory(mb):
    """Address-space limit: a reader allocating far more than a file warrants then
    raises MemoryError (a finding) instead of swapping the machine."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
    except (ImportError, ValueError, OSError):
        pass


def run_target(args):
    try:
        import atheris
    except ImportError:
        print("fuzz_loaders: atheris is not installed (pip install atheris)", file=sys.stderr)
        return SKIPPED
    with atheris.instrument_imports(include=["nndl_fast", "zipfile", "gzip", "json",
                                             "pickle", "_compression"]):
        import gzip, json, pickle, zipfile  # noqa: F401,E401  (the readers' readers)
        _modules()
    _limit_memory(args.max_memory_mb)
    corpus = args.corpus or tempfile.mkdtemp(prefix="nndl_fuzz_%s_" % args.run)
    os.makedirs(corpus, exist_ok=True)
    for i, data in enumerate(seeds(args.run)):
        with open(os.path.join(corpus, "seed-%d" % i), "wb") as f:
            f.write(data)
    os.makedirs(args.artifacts, exist_ok=True)
    path = os.path.join(tempfile.mkdtemp(prefix="nndl_fuzz_file_"), "input")
    target = args.run

    def test_one_input(data):
        one_input(target, data, path)

    libfuzzer = [sys.argv[0], "-max_total_time=%d" % args.seconds,
                 "-timeout=%d" % args.input_timeout, "-rss_limit_mb=%d" % args.rss_limit_mb,
                 "-artifact_prefix=%s/%s-" % (args.artifacts.rstrip("/"), target),
                 "-max_len=%d" % args.max_len, "-print_final_stats=1", corpus]
    atheris.Setup(libfuzzer, test_one_input)
    atheris.Fuzz()
    return 0


def replay(args):
    """Run one saved input through the reader, showing any undocumented exception."""
    with open(args.replay, "rb") as f:
        data = f.read()
    path = os.path.join(tempfile.mkdtemp(prefix="nndl_fuzz_file_"), "input")
    one_input(args.target, data, path)
    print("%s: %s: only documented errors" % (args.target, args.replay))
    return 0


# --- the driver: each target in its own process, for its share of the time ---------------

def drive(args):
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("fuzz_loaders: atheris is not installed (pip install atheris); skipped")
        return SKIPPED
    targets = [args.target] if args.target else list(TARGETS)
    share = max(1, int(args.seconds // len(targets)))
    failed = []
    for target in targets:
        cmd = [sys.executable, os.path.abspath(__file__), "--run", target,
               "--seconds", str(share), "--artifacts", args.artifacts,
               "--input-timeout", str(args.input_timeout),
               "--rss-limit-mb", str(args.rss_limit_mb),
               "--max-memory-mb", str(args.max_memory_mb), "--max-len", str(args.max_len)]
        if args.corpus:
            cmd += ["--corpus", os.path.join(args.corpus, target)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=share + 120)
            output, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            output, rc = "%s%s" % (exc.stdout or "", exc.stderr or ""), "timeout"
        runs = re.findall(r"Done (\d+) runs", output) or re.findall(r"#(\d+)\s", output)
        cov = re.findall(r"cov: (\d+)", output)
        print("fuzz %-8s %3ds  %8s inputs  cov %5s  %s"
              % (target, time.perf_counter() - t0, runs[-1] if runs else "?",
                 cov[-1] if cov else "?", "ok" if rc == 0 else "FAILED (%s)" % rc))
        if rc != 0:
            failed.append(target)
            print(output[-6000:])
    if failed:
        print("fuzz_loaders: findings in %s; inputs under %s" % (", ".join(failed),
                                                                args.artifacts))
        return 1
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=30,
                   help="total time, split evenly over the targets (default 30)")
    p.add_argument("--target", choices=TARGETS, help="fuzz only this reader")
    p.add_argument("--list", action="store_true", help="list the targets")
    p.add_argument("--corpus", help="keep the corpus in this directory (one per target)")
    p.add_argument("--artifacts", default=os.path.join(tempfile.gettempdir(), "nndl_fuzz"),
                   help="where findings are written (default: $TMPDIR/nndl_fuzz)")
    p.add_argument("--input-timeout", type=int, default=10,
                   help="seconds one input may take before it counts as a hang (10)")
    p.add_argument("--rss-limit-mb", type=int, default=2048)
    p.add_argument("--max-memory-mb", type=int, default=4096,
                   help="address-space limit of the fuzzing process (4096)")
    p.add_argument("--max-len", type=int, default=8192, help="longest input (8192 bytes)")
    p.add_argument("--replay", help="read one saved input (with --target) and report")
    p.add_argument("--run", choices=TARGETS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(TARGETS))
        return 0
    if args.replay:
        if not args.target:
            p.error("--replay needs --target")
        return replay(args)
    if args.run:
        return run_target(args)
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
