"""The book's chapter-3 result, end to end (minutes: deselect with -m "not slow").

Network([784, 100, 10]), cross-entropy, lmbda 5.0, eta 0.5, mini-batch 10,
30 epochs: the book reports 97.92% on the MNIST test set.
"""
import contextlib
import io
import random

import numpy as np
import pytest

from nndl_fast import network2


@pytest.mark.slow
def test_book_run_reaches_97_8_percent(mnist_wrapped):
    training, _, test = mnist_wrapped
    np.random.seed(12345)
    random.seed(12345)
    net = network2.Network([784, 100, 10], cost=network2.CrossEntropyCost)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _, test_accuracy, _, _ = net.SGD(list(training), 30, 10, 0.5, lmbda=5.0,
                                         evaluation_data=test,
                                         monitor_evaluation_accuracy=True)
    assert len(test_accuracy) == 30
    print("test accuracy per epoch:", test_accuracy)
    print("final: %.2f%%, best: %.2f%%" % (test_accuracy[-1] / 100.0,
                                           max(test_accuracy) / 100.0))
    assert test_accuracy[-1] >= 9780
