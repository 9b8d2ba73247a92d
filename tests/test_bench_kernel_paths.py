"""The kernel-path benchmark (bench/bench_kernel_paths.py, ``python -m nndl_fast
bench kernel_paths``) in quick mode: every path this processor runs, each in
its own processes, with ratios to the fastest and the targets of the AVX2 and
baseline paths."""
import json
import os
import sys

import pytest

from nndl_fast import _config

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH_DIR)
import suite as benchmarks  # noqa: E402  (bench/suite.py, from the checkout)

pytestmark = pytest.mark.skipif(not _config.use_compiled(), reason="compiled kernels only")


def test_quick_run_times_every_path(tmp_path, capsys):
    from nndl_fast import _dense
    paths = _dense.kernel_paths()
    out_json = tmp_path / "kernel_paths.json"
    assert benchmarks.main(["kernel_paths", "--quick", "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out_json.read_text())
    assert result["quick"] and result["threads"] == 2 and result["repeats"] == 1
    assert result["base"] == paths[0]
    cases = [c for c, kind, _ in benchmarks.PATH_CASES
             if kind == "dense" or _config.import_optional("network3") is not None]
    rows = result["rows"]
    assert [(r["case"], r["path"]) for r in rows] == [(c, p) for c in cases for p in paths]
    for case in cases:
        by_path = {r["path"]: r for r in rows if r["case"] == case}
        base = by_path[paths[0]]
        assert base["ratio"] == 1.0
        for p, r in by_path.items():
            assert r["seconds"] > 0 and r["seconds"] == min(r["all_seconds"])
            assert r["ratio"] == pytest.approx(r["seconds"] / base["seconds"])
            if paths[0] == "avx512":
                assert r["target"] == benchmarks.PATH_TARGETS[p]
                if r["target"] is not None:
                    assert r["meets_target"] == (r["ratio"] <= r["target"])
            assert "| %s | %s | %.3f | %.2f |" % (case, p, r["seconds"], r["ratio"]) in table
    # OpenBLAS ran as told on the AVX2 and baseline paths
    for p in paths:
        coretype = benchmarks.PATH_BLAS_CORETYPE[p]
        if coretype:
            assert set(result["blas"][p]) <= {coretype, "None"}, result["blas"]
    assert "Quick mode" in table and "best of 1" in table


def test_unknown_or_missing_path_is_refused():
    with pytest.raises(ValueError, match="kernel path 'sse9': this processor runs"):
        benchmarks.bench_kernel_paths(quick=True, paths=["sse9"])
