"""The benchmark suite's pieces (bench/suite.py): analytic FLOP counts, GEMM peak,
table, progress bar; and ``python -m nndl_fast bench`` in and out of a checkout."""
import io
import os
import random
import sys

import numpy as np
import pytest

from nndl_fast import __main__ as cli

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH_DIR)
import suite as benchmarks  # noqa: E402  (bench/suite.py, from the checkout)


def test_dense_flops_count():
    f = benchmarks.dense_flops_per_example([784, 30, 10], 10)
    assert f["forward"] == 2 * (784 * 30 + 30 * 10)
    # ∇w for both layers, wᵀδ only into the hidden layer.
    assert f["backward"] == 2 * (784 * 30 + 30 * 10) + 2 * 30 * 10
    assert f["update"] == pytest.approx(2 * (784 * 30 + 30 * 10 + 40) / 10)
    decayed = benchmarks.dense_flops_per_example([784, 30, 10], 10, weight_decay=True)
    assert decayed["update"] - f["update"] == pytest.approx((784 * 30 + 300) / 10)
    assert f["total"] == f["forward"] + f["backward"] + f["update"]
    with pytest.raises(ValueError):
        benchmarks.dense_flops_per_example([784, 30, 10], 0)


def test_conv_flops_count():
    from nndl_fast import reproduce
    from nndl_fast.reference import network3
    spec = benchmarks.layer_flop_spec(reproduce.network3_layers("ch6-conv1", 10, network3))
    assert spec == [("conv", (1, 28, 28), (20, 5, 5)), ("fc", 2880, 100), ("fc", 100, 10)]
    f = benchmarks.conv_flops_per_example(spec, 10)
    conv = 2 * 20 * 25 * 24 * 24
    assert f["forward"] == conv + 2 * 2880 * 100 + 2 * 100 * 10
    assert f["backward"] == conv + 2 * (2 * 2880 * 100 + 2 * 100 * 10)
    with pytest.raises(ValueError, match="larger than"):
        benchmarks.conv_flops_per_example([("conv", (1, 3, 3), (2, 5, 5))], 1)
    with pytest.raises(ValueError, match="unknown chapter-6"):
        reproduce.network3_layers("ch6-nope", 10)


def test_bench_command_finds_the_checkout(monkeypatch, tmp_path, capsys):
    assert os.path.samefile(cli._bench_dir(), BENCH_DIR)
    monkeypatch.chdir(tmp_path)              # found next to the package, from anywhere
    assert os.path.samefile(cli._bench_dir(), BENCH_DIR)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    for argv, shows in ((["bench", "--help"], "source checkout"),
                        (["bench", "suite", "--help"], "--quick"),
                        (["bench", "expand_mnist", "--help"], "--repeats")):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 0
        assert shows in capsys.readouterr().out, argv


def test_bench_command_outside_a_checkout(monkeypatch, tmp_path, capsys):
    """An installed wheel has no bench/: the command says where benchmarks run."""
    monkeypatch.setattr(cli, "_bench_dir", lambda: None)
    assert cli.main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "they run from a source checkout" in err
    assert "python -m nndl_fast bench suite --quick" in err


def test_gemm_peak_is_a_plausible_rate():
    rate = benchmarks.gemm_peak_gflops(np.float64, 1, n=256, repeats=2)
    assert 0.1 < rate < 10000
    with pytest.raises(ValueError):
        benchmarks.gemm_peak_gflops(np.float64, 0, n=64)


def test_run_suite_rejects_unknown_case():
    with pytest.raises(ValueError, match="unknown benchmark case"):
        benchmarks.run_suite(cases=["network", "nope"])


def test_suite_table_and_ratios():
    result = benchmarks.run_suite(quick=True, cases=["feedforward"], threads=1,
                                  reference_n=50, use_torch=False, gemm_n=128,
                                  log=lambda msg: None)
    rows = result["rows"]
    assert [r["kind"] for r in rows][0] == "reference"
    ref = rows[0]["seconds"]
    for r in rows:
        assert r["speedup_vs_reference"] == pytest.approx(ref / r["seconds"])
        assert r["images_per_s"] == pytest.approx(50000 / r["seconds"])
        assert r["gflops"] == pytest.approx(2 * (784 * 30 + 300) * 50000 / r["seconds"] / 1e9)
    table = benchmarks.format_suite_table(result)
    assert table.count("| feedforward |") == len(rows)
    assert "GEMM peak" in table and "quick mode" in table


def test_repeated_one_epoch_sgd_matches_one_call(small_training, quiet):
    """SGD(data, 1, ...) k times consumes the stdlib generator as SGD(data, k, ...)."""
    from nndl_fast import network
    results = []
    for calls in ([3], [1, 1, 1]):
        np.random.seed(5)
        random.seed(7)
        net = network.Network([784, 12, 10])
        data = list(small_training[:300])
        with quiet():
            for epochs in calls:
                net.SGD(data, epochs, 10, 3.0)
        results.append((net.weights, [id(p) for p in data], random.random()))
    (w1, order1, r1), (w2, order2, r2) = results
    assert order1 == order2 and r1 == r2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def test_progress_bar_passes_lines_through_and_counts_epochs(capsys):
    pytest.importorskip("tqdm")
    from nndl_fast.progress import epoch_progress
    bar_out = io.StringIO()
    with epoch_progress(3, file=bar_out) as bar:
        print("Epoch 0: 1 / 2")
        print("Epoch 1 training complete")
        print("Cost on training data: 0.5")
        print("")
        print("partial", end="")
    assert bar.n == 2
    out = capsys.readouterr().out
    assert out == ("Epoch 0: 1 / 2\nEpoch 1 training complete\nCost on training data: 0.5\n"
                   "\npartial\n")
    assert "2/3" in bar_out.getvalue()
    with pytest.raises(ValueError):
        with epoch_progress(-1):
            pass
