"""``python -m nndl_fast reproduce``: results file, table, plots, skipping and resuming."""
import json
import os

import numpy as np
import pytest

from nndl_fast import reproduce as R
from nndl_fast.__main__ import main as cli

# Small enough for the suite; three epochs so a run can stop in the middle.
TINY = R.DataSpec("tiny", train_size=300, eval_size=200, epochs=3, expand_from=60)


class Stop(Exception):
    """Stands for a killed process: raised from the epoch hook."""


def stop_after(k):
    def hook(key, epoch, curve):
        if epoch == k:
            raise Stop(key)
    return hook


def load_results(out):
    with open(os.path.join(out, R.RESULTS_FILE)) as f:
        return json.load(f)


def check_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    mpimg = pytest.importorskip("matplotlib.image")
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    # Not a blank canvas: curves and text in several colours.
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 20


def check_run(run, row):
    assert run["row"] == row.name and run["chapter"] == row.chapter
    for key in ("task", "seed", "config", "best_validation_accuracy", "test_accuracy",
                "curve", "wall_seconds", "threads", "machine", "versions", "value"):
        assert key in run, key
    assert set(run["versions"]) >= {"nndl_fast", "numpy", "python"}
    assert run["machine"]["logical_cpus"] >= 1 and run["machine"]["cpu"]
    assert run["threads"] >= 1 and run["wall_seconds"] > 0
    assert 0.0 <= run["value"] <= 1.0
    if row.module != "ensemble":
        curve = run["curve"]
        assert len(curve["validation"]) == len(curve["test"]) == run["epochs"]
        assert run["best_validation_accuracy"] == max(curve["validation"])
        assert run["test_accuracy"] == curve["test"][run["best_epoch"]]


# Chapter 3 has nine rows of three seeds each: one seed is enough here.
@pytest.mark.parametrize("chapter,seeds", [("ch1", None), ("ch3", [0]), ("ch6", None)])
def test_quick_chapter_writes_results_table_and_plot(chapter, seeds, tmp_path, capsys):
    out = str(tmp_path / "res")
    options = ["--seeds", ",".join(map(str, seeds))] if seeds else []
    assert cli(["reproduce", chapter, "--quick", "--out", out, "--threads", "2"]
               + options) == 0
    doc = load_results(out)
    assert doc["format"] == R.RESULTS_FORMAT and doc["mode"] == "quick"
    rows = R.rows_for(chapter)
    expected = sum(1 if row.module == "ensemble" else len(seeds or row.seeds) for row in rows)
    assert len(doc["runs"]) == expected
    by_name = {row.name: row for row in rows}
    for run in doc["runs"]:
        check_run(run, by_name[run["row"]])
        assert run["config"]["epochs"] == 2 == run["epochs"]
    table = (tmp_path / "res" / R.TABLE_FILE).read_text()
    for row in rows:
        assert row.title in table and row.book_text in table
    assert "not run yet" not in table
    check_png(os.path.join(out, "curves-%s.png" % chapter))
    # Nothing left over from the checkpoints; state/ keeps itself out of git.
    assert os.listdir(os.path.join(out, "state", "checkpoints")) == []
    assert (tmp_path / "res" / "state" / ".gitignore").read_text().strip().endswith("*")
    if chapter == "ch6":
        ensemble = [run for run in doc["runs"] if run["row"] == "ch6-ensemble"][0]
        assert ensemble["seed"] == [0, 1, 2, 3, 4] and len(ensemble["members"]) == 5
        assert os.path.exists(os.path.join(out, "state", "cache",
                                           "expanded-from-200-seed-0-x.npy"))
    printed = capsys.readouterr().out
    assert "%d of %d runs to do" % (expected, expected) in printed

    # A rerun skips every finished run and leaves the results as they were.
    before = (tmp_path / "res" / R.RESULTS_FILE).read_bytes()
    assert cli(["reproduce", chapter, "--quick", "--out", out] + options) == 0
    assert "0 of %d runs to do" % expected in capsys.readouterr().out
    assert (tmp_path / "res" / R.RESULTS_FILE).read_bytes() == before
    assert R.plan(chapter, out, R.QUICK, seeds=seeds) == []


@pytest.mark.parametrize("row", ["ch1-30", "ch3-l2-30", "ch6-dropout"])
def test_a_killed_run_resumes_to_the_uninterrupted_result(row, tmp_path):
    whole = R.run_one(row, 1, TINY, tmp_path / "whole", threads=2)

    out = tmp_path / "killed"
    with pytest.raises(Stop):
        R.run_one(row, 1, TINY, out, threads=2, epoch_hook=stop_after(1))
    key = R.task_key(row, 1)
    stem = key.replace("/", "-")
    with open(out / "state" / "checkpoints" / (stem + ".json")) as f:
        state = json.load(f)
    assert state["epoch"] == 1 and len(state["curve"]["validation"]) == 1
    assert state["curve"]["validation"] == whole["curve"]["validation"][:1]
    # Killed again after the next epoch, then left to finish.
    epochs_run = []
    with pytest.raises(Stop):
        R.run_one(row, 1, TINY, out, threads=1,
                  epoch_hook=lambda k, e, c: (epochs_run.append(e), stop_after(2)(k, e, c)))
    assert epochs_run == [2]
    resumed = R.run_one(row, 1, TINY, out, threads=2)
    assert resumed["resumed"] == 2 and whole["resumed"] == 0
    for name in ("best_validation_accuracy", "best_epoch", "test_accuracy",
                 "peak_test_accuracy", "final_validation_accuracy", "final_test_accuracy",
                 "value"):
        assert resumed[name] == whole[name], name
    assert resumed["curve"]["validation"] == whole["curve"]["validation"]
    assert resumed["curve"]["test"] == whole["curve"]["test"]
    # The final networks are the same to the last bit.
    a = tmp_path / "whole" / whole["net_file"]
    b = out / resumed["net_file"]
    if a.suffix == ".npz":
        with np.load(a) as za, np.load(b) as zb:
            assert sorted(za.files) == sorted(zb.files)
            for name in za.files:
                assert np.array_equal(za[name], zb[name]), name
    else:
        assert json.loads(a.read_text()) == json.loads(b.read_text())
    # Recording removes the checkpoints.
    R.record(out, resumed, TINY)
    assert os.listdir(out / "state" / "checkpoints") == []


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    with pytest.raises(Stop):
        R.run_one("ch1-30", 0, TINY, tmp_path, epoch_hook=stop_after(1))
    other = R.DataSpec("tiny", train_size=200, eval_size=200, epochs=3)
    logged = []
    result = R.run_one("ch1-30", 0, other, tmp_path, log=logged.append)
    assert result["resumed"] == 0
    assert any("starting afresh" in line for line in logged)


def test_plan_lists_pending_tasks_and_dependencies(tmp_path):
    tasks = R.plan("ch6", tmp_path, R.FULL, rows=["ensemble"])
    assert [t.key for t in tasks] == ["ch6-dropout/seed-%d" % s for s in range(5)] + [
        "ch6-ensemble/seeds-0-1-2-3-4"]
    assert tasks[-1].requires == tuple(t.key for t in tasks[:-1])
    assert tasks[-1].seed == (0, 1, 2, 3, 4)
    tasks = R.plan("all", tmp_path, R.FULL, seeds=[7, 8])
    assert {t.seed for t in tasks if t.row != "ch6-ensemble"} == {7, 8}
    assert [r.name for r in R.rows_for("ch1", ["100"])] == ["ch1-100"]


def test_ensemble_needs_its_members(tmp_path):
    with pytest.raises(ValueError, match="ensemble needs the finished run ch6-dropout/seed-0"):
        R.run_one("ch6-ensemble", (0, 1), TINY, tmp_path)


def test_ensemble_votes_the_recorded_members(tmp_path):
    from nndl_fast import network3
    for seed in (0, 1, 2):
        R.record(tmp_path, R.run_one("ch6-dropout", seed, TINY, tmp_path), TINY)
    result = R.run_one("ch6-ensemble", (0, 1, 2), TINY, tmp_path)
    nets = [network3.load(tmp_path / "state" / "nets" / ("ch6-dropout-seed-%d.npz" % s))
            for s in (0, 1, 2)]
    _, test = R._shared_eval_data(TINY)
    assert result["test_accuracy"] == network3.ensemble_accuracy(nets, test)
    assert result["members_wall_seconds"] > 0


def test_results_of_other_settings_or_mode_are_refused(tmp_path):
    result = R.run_one("ch1-30", 0, TINY, tmp_path)
    R.record(tmp_path, result, TINY)
    with pytest.raises(ValueError, match="holds tiny results, not quick ones"):
        R.plan("ch1", tmp_path, R.QUICK)
    with pytest.raises(ValueError, match="holds tiny results, not quick ones"):
        R.record(tmp_path, result, R.QUICK)
    changed = R.DataSpec("tiny", train_size=200, eval_size=200, epochs=3)
    with pytest.raises(ValueError, match="ch1-30/seed-0 made with other settings.*train_size"):
        R.plan("ch1", tmp_path, changed)


def test_command_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli(["reproduce", "ch2"])
    assert exc.value.code == 2
    assert "invalid choice: 'ch2'" in capsys.readouterr().err
    for bad in ("a,b", "-1", "0,0", ""):
        with pytest.raises(SystemExit):
            cli(["reproduce", "ch1", "--seeds", bad])
        assert "expected" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["reproduce", "ch1", "--threads", "0"])
    assert "expected a positive integer" in capsys.readouterr().err
    assert cli(["reproduce", "ch1", "--rows", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown row 'nope' for ch1: expected one of 30, 100" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert cli(["reproduce", "ch1", "--quick", "--out", str(a_file)]) == 2
    assert "is a file, expected a directory" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / R.RESULTS_FILE).write_text("{not json")
    assert cli(["reproduce", "ch1", "--quick", "--out", str(tmp_path / "bad")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_library_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown chapter 'ch9'"):
        R.plan("ch9", tmp_path)
    with pytest.raises(ValueError, match="unknown row 'nope'"):
        R.run_one("nope", 0, TINY, tmp_path)
    with pytest.raises(ValueError, match="seed must be an integer"):
        R.run_one("ch1-30", -1, TINY, tmp_path)
    with pytest.raises(ValueError, match="seeds must be integers"):
        R.plan("ch1", tmp_path, seeds=[1.5])
    with pytest.raises(ValueError, match="DataSpec epochs must be None or a positive int"):
        R.DataSpec("x", epochs=0)
    with pytest.raises(ValueError, match="data_spec must be a DataSpec"):
        R.plan("ch1", tmp_path, "medium")


def test_list_shows_rows_and_pending_runs(tmp_path, capsys):
    assert cli(["reproduce", "ch6", "--list", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ch6-expanded-2fc" in out and "99.43%" in out
    assert "12 run(s) to do" in out and "ch6-ensemble/seeds-0-1-2-3-4" in out
    assert not os.path.exists(tmp_path / R.RESULTS_FILE)


def test_bench_ch6_table_wraps_the_command(capsys):
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "bench", "ch6_table.py")
    spec = importlib.util.spec_from_file_location("ch6_table", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    # The benchmark scripts' view of the rows.
    assert table.hyper("relu") == (0.03, 0.1, 60, False)
    assert table.hyper("ensemble") == table.hyper("dropout") == (0.03, 0.0, 40, True)
    from nndl_fast.reference import network3 as ref
    layers = table.layers_for("expanded-2fc", ref)
    assert [type(layer).__name__ for layer in layers] == [
        "ConvPoolLayer", "ConvPoolLayer", "FullyConnectedLayer", "FullyConnectedLayer",
        "SoftmaxLayer"]
    assert table.main(["--list", "--rows", "fc"]) == 0
    assert "ch6-fc" in capsys.readouterr().out
