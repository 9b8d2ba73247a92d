"""Chapter 1's baselines: average darkness and an SVM."""
import numpy as np
import pytest

from nndl_fast import __main__ as cli
from nndl_fast import baselines

BOOK_DARKNESS_CORRECT = 2225


def test_average_darkness_matches_the_book():
    correct, n = baselines.average_darkness()
    assert n == 10000
    # Within 1 percentage point of the book's 22.25%.
    assert abs(correct - BOOK_DARKNESS_CORRECT) <= 100, correct


def test_darkness_on_hand_made_images():
    # Digit 0 is light (total 1), digit 1 dark (total 9), digit 2 in between (5).
    x = np.array([[1, 0, 0], [0.5, 0.5, 0], [3, 3, 3], [3, 3, 3], [2, 2, 1]], dtype=np.float32)
    y = np.array([0, 0, 1, 1, 2])
    averages = baselines.darkness_averages(x, y, n_classes=3)
    np.testing.assert_allclose(averages, [1.0, 9.0, 5.0])
    test_x = np.array([[0, 0, 0.2], [4, 4, 4], [2, 2, 2], [1.5, 1.5, 1.5]])
    assert baselines.darkness_predict(averages, test_x).tolist() == [0, 1, 2, 2]
    correct, n = baselines.average_darkness((x, y), (test_x, np.array([0, 1, 2, 0])))
    assert (correct, n) == (3, 4)


def test_absent_digit_is_never_predicted():
    averages = baselines.darkness_averages(np.array([[1.0], [3.0]]), np.array([0, 2]), 3)
    assert np.isnan(averages[1])
    assert baselines.darkness_predict(averages, np.array([[2.0], [2.9]])).tolist() == [0, 2]


def test_svm_on_a_subsample():
    pytest.importorskip("sklearn")
    correct, n = baselines.svm_baseline(train_size=1000, test_size=300, seed=1)
    assert n == 300
    assert correct / n > 0.85          # the book's full-data SVM gets 94.35%


def test_cli_darkness(capsys):
    assert cli.main(["baseline", "darkness"]) == 0
    out = capsys.readouterr().out
    assert "Average darkness: 2225 of 10000 test images correct (22.25%)" in out


def test_cli_svm(capsys):
    pytest.importorskip("sklearn")
    assert cli.main(["baseline", "svm", "--train-size", "300", "--test-size", "50"]) == 0
    assert "svm.SVC() trained on 300 images:" in capsys.readouterr().out


def test_bad_input_is_named():
    with pytest.raises(TypeError, match=r"training_data must be a pair \(x, y\)"):
        baselines.average_darkness([1, 2, 3], None)
    with pytest.raises(ValueError, match=r"shapes \(3, 2\) and \(2,\)"):
        baselines.average_darkness((np.ones((3, 2)), np.zeros(2, int)),
                                   (np.ones((1, 2)), np.zeros(1, int)))
    with pytest.raises(TypeError, match="labels have dtype float64"):
        baselines.average_darkness((np.ones((2, 2)), np.zeros(2)),
                                   (np.ones((1, 2)), np.zeros(1, int)))
    with pytest.raises(ValueError, match=r"labels must lie in 0..2, got 0..5"):
        baselines.darkness_averages(np.ones((2, 2)), np.array([0, 5]), n_classes=3)
    pytest.importorskip("sklearn")
    with pytest.raises(ValueError, match="train_size must be >= 1"):
        baselines.svm_baseline(train_size=0)
