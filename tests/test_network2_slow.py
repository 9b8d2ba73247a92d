"""The book's chapter-3 result, end to end (minutes: deselect with -m "not slow").

Network([784, 100, 10]), cross-entropy, lmbda 5.0, eta 0.5, mini-batch 10,
30 epochs. The book reports 97.92% for one run (on its validation data). The
same run here, which equals the reference code to ~1e-14 over full epochs,
gave on the MNIST test set (final / best of the 30 epochs): seed 12345
97.65% / 97.82%, seed 1 97.30% / 97.65%, seed 2 97.59% / 97.74%. Seed to seed
the final accuracy varies by a few tenths of a percent, so the bounds below
leave room for that spread; a broken training step lands far lower.
"""
import contextlib
import io
import random

import numpy as np
import pytest

from nndl_fast import network2


@pytest.mark.slow
def test_book_run_reaches_the_books_accuracy(mnist_wrapped):
    training, _, test = mnist_wrapped
    np.random.seed(12345)
    random.seed(12345)
    net = network2.Network([784, 100, 10], cost=network2.CrossEntropyCost)
    with contextlib.redirect_stdout(io.StringIO()):
        _, test_accuracy, _, _ = net.SGD(list(training), 30, 10, 0.5, lmbda=5.0,
                                         evaluation_data=test,
                                         monitor_evaluation_accuracy=True)
    assert len(test_accuracy) == 30
    print("test accuracy per epoch:", test_accuracy)
    print("final: %.2f%%, best: %.2f%%" % (test_accuracy[-1] / 100.0,
                                           max(test_accuracy) / 100.0))
    assert max(test_accuracy) >= 9750
    assert test_accuracy[-1] >= 9720
