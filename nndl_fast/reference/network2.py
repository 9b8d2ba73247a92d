"""Reference network2.py (chapter 3): cross-entropy, L2, better initialisation,
monitoring, save/load — plus the chapter's further techniques as keyword
arguments whose defaults keep the book's behaviour:

* ``early_stopping_n``: stop when evaluation accuracy has not improved for n epochs;
* ``LogLikelihoodCost``: a softmax output layer with the log-likelihood cost;
* ``regularization="L1"``;
* ``momentum`` (the coefficient μ of momentum-based gradient descent);
* ``eta_decay_n``: halve eta whenever evaluation accuracy has not improved for n
  epochs, and stop once eta has fallen to ``eta_stop_ratio`` of its first value.
"""
import json
import random
import sys

import numpy as np

from .activations import resolve_activation, sigmoid


class QuadraticCost(object):

    @staticmethod
    def fn(a, y):
        """Cost of output ``a`` against desired output ``y``."""
        return 0.5 * np.linalg.norm(a - y) ** 2

    @staticmethod
    def delta(z, a, y):
        """Error delta of the output layer."""
        return (a - y) * sigmoid_prime(z)


class CrossEntropyCost(object):

    @staticmethod
    def fn(a, y):
        """Cross-entropy cost; ``nan_to_num`` makes 0·log(0) count as 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(np.nan_to_num(-y * np.log(a) - (1 - y) * np.log(1 - a)))

    @staticmethod
    def delta(z, a, y):
        """Error delta of the output layer (σ'(z) cancels)."""
        return (a - y)


class LogLikelihoodCost(object):
    """Log-likelihood cost for a softmax output layer (chapter 3)."""

    output_activation = "softmax"

    @staticmethod
    def fn(a, y):
        """−ln of the probability given to the desired class."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(np.nan_to_num(-y * np.log(a)))

    @staticmethod
    def delta(z, a, y):
        return (a - y)


def cost_class(cost):
    """The cost's class, whether the class itself or an instance was given."""
    return cost if isinstance(cost, type) else type(cost)


def _softmax_output(cost):
    return getattr(cost_class(cost), "output_activation", "sigmoid") == "softmax"


class Network(object):

    def __init__(self, sizes, cost=CrossEntropyCost, activation_fn=sigmoid):
        """``activation_fn``: the hidden layers' activation, one of network3's
        ``sigmoid`` (the book's), ``tanh``, ``ReLU`` or ``linear`` (or its name);
        the output layer is sigmoid, or softmax for ``LogLikelihoodCost``."""
        self.activation_fn = resolve_activation(activation_fn).fn
        self.num_layers = len(sizes)
        self.sizes = sizes
        self.default_weight_initializer()
        self.cost = cost

    def default_weight_initializer(self):
        """Biases N(0, 1); weights N(0, 1/n_in). Biases drawn first."""
        self.biases = [np.random.randn(y, 1) for y in self.sizes[1:]]
        self.weights = [np.random.randn(y, x) / np.sqrt(x)
                        for x, y in zip(self.sizes[:-1], self.sizes[1:])]

    def large_weight_initializer(self):
        """Biases and weights N(0, 1), as chapter 1. Biases drawn first."""
        self.biases = [np.random.randn(y, 1) for y in self.sizes[1:]]
        self.weights = [np.random.randn(y, x)
                        for x, y in zip(self.sizes[:-1], self.sizes[1:])]

    def feedforward(self, a):
        """The network's output for input column ``a``."""
        for i, (b, w) in enumerate(zip(self.biases, self.weights)):
            a = self._layer_fn(i)(np.dot(w, a) + b)
        return a

    def _layer_fn(self, i):
        """Layer i's activation: ``activation_fn``, but the output layer's is
        sigmoid (softmax with ``LogLikelihoodCost``)."""
        if i < len(self.weights) - 1:
            return self.activation_fn
        return softmax if _softmax_output(self.cost) else sigmoid

    def _shuffle(self, training_data):
        """The book's ``random.shuffle(training_data)`` (a subclass may shuffle with
        a generator of its own)."""
        random.shuffle(training_data)

    def SGD(self, training_data, epochs, mini_batch_size, eta,
            lmbda=0.0,
            evaluation_data=None,
            monitor_evaluation_cost=False,
            monitor_evaluation_accuracy=False,
            monitor_training_cost=False,
            monitor_training_accuracy=False,
            early_stopping_n=0,
            regularization="L2",
            momentum=0.0,
            eta_decay_n=0,
            eta_stop_ratio=1.0 / 1024):
        """Mini-batch SGD; returns the four per-epoch monitoring lists."""
        if evaluation_data:
            n_data = len(evaluation_data)
        n = len(training_data)
        evaluation_cost, evaluation_accuracy = [], []
        training_cost, training_accuracy = [], []
        self._velocities = None
        best_accuracy, epochs_since_best = None, 0
        eta0 = eta
        for j in range(epochs):
            self._shuffle(training_data)
            mini_batches = [training_data[k:k + mini_batch_size]
                            for k in range(0, n, mini_batch_size)]
            for mini_batch in mini_batches:
                self.update_mini_batch(mini_batch, eta, lmbda, n,
                                       regularization=regularization, momentum=momentum)
            print("Epoch %s training complete" % j)
            if monitor_training_cost:
                cost = self.total_cost(training_data, lmbda)
                training_cost.append(cost)
                print("Cost on training data: {}".format(cost))
            if monitor_training_accuracy:
                accuracy = self.accuracy(training_data, convert=True)
                training_accuracy.append(accuracy)
                print("Accuracy on training data: {} / {}".format(accuracy, n))
            if monitor_evaluation_cost:
                cost = self.total_cost(evaluation_data, lmbda, convert=True)
                evaluation_cost.append(cost)
                print("Cost on evaluation data: {}".format(cost))
            if monitor_evaluation_accuracy:
                accuracy = self.accuracy(evaluation_data)
                evaluation_accuracy.append(accuracy)
                print("Accuracy on evaluation data: {} / {}".format(accuracy, n_data))
            print()
            if (early_stopping_n or eta_decay_n) and monitor_evaluation_accuracy:
                if best_accuracy is None or accuracy > best_accuracy:
                    best_accuracy, epochs_since_best = accuracy, 0
                else:
                    epochs_since_best += 1
                if early_stopping_n and epochs_since_best >= early_stopping_n:
                    print("Early stopping: no improvement in evaluation accuracy "
                          "for {} epochs".format(early_stopping_n))
                    break
                if eta_decay_n and epochs_since_best >= eta_decay_n:
                    eta /= 2.0
                    epochs_since_best = 0
                    if eta < eta0 * eta_stop_ratio:
                        print("Learning rate fell to {} (1/{:g} of its initial value): "
                              "stopping".format(eta, 1.0 / eta_stop_ratio))
                        break
                    print("Learning rate halved to {}".format(eta))
        return evaluation_cost, evaluation_accuracy, training_cost, training_accuracy

    def update_mini_batch(self, mini_batch, eta, lmbda, n,
                          regularization="L2", momentum=0.0):
        """One gradient step; ``n`` is the size of the whole training set."""
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in mini_batch:
            delta_nabla_b, delta_nabla_w = self.backprop(x, y)
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w)]
        m = len(mini_batch)
        if momentum == 0.0:
            if regularization == "L2":
                self.weights = [(1 - eta * (lmbda / n)) * w - (eta / m) * nw
                                for w, nw in zip(self.weights, nabla_w)]
            elif regularization == "L1":
                self.weights = [w - (eta * lmbda / n) * np.sign(w) - (eta / m) * nw
                                for w, nw in zip(self.weights, nabla_w)]
            else:
                raise ValueError("regularization must be 'L2' or 'L1', got %r"
                                 % (regularization,))
            self.biases = [b - (eta / m) * nb for b, nb in zip(self.biases, nabla_b)]
            return
        # Momentum: v ← μv − η∇C (∇C including the regulariser), w ← w + v.
        if getattr(self, "_velocities", None) is None:
            self._velocities = ([np.zeros(w.shape) for w in self.weights],
                                [np.zeros(b.shape) for b in self.biases])
        vw, vb = self._velocities
        for i, (w, nw) in enumerate(zip(self.weights, nabla_w)):
            reg = (eta * lmbda / n) * (w if regularization == "L2" else np.sign(w))
            vw[i] = momentum * vw[i] - reg - (eta / m) * nw
            self.weights[i] = w + vw[i]
        for i, (b, nb) in enumerate(zip(self.biases, nabla_b)):
            vb[i] = momentum * vb[i] - (eta / m) * nb
            self.biases[i] = b + vb[i]

    def backprop(self, x, y):
        """``(nabla_b, nabla_w)`` for one example."""
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        activation = x
        activations = [x]
        zs = []
        for i, (b, w) in enumerate(zip(self.biases, self.weights)):
            z = np.dot(w, activation) + b
            zs.append(z)
            activation = self._layer_fn(i)(z)
            activations.append(activation)
        delta = cost_class(self.cost).delta(zs[-1], activations[-1], y)
        nabla_b[-1] = delta
        nabla_w[-1] = np.dot(delta, activations[-2].transpose())
        hidden = resolve_activation(self.activation_fn)
        for l in range(2, self.num_layers):
            sp = hidden.prime(activations[-l])     # σ'(z) = a(1 - a) for the sigmoid
            delta = np.dot(self.weights[-l + 1].transpose(), delta) * sp
            nabla_b[-l] = delta
            nabla_w[-l] = np.dot(delta, activations[-l - 1].transpose())
        return (nabla_b, nabla_w)

    def accuracy(self, data, convert=False):
        """Correct classifications in ``data``; ``convert=True`` when y is one-hot."""
        if convert:
            results = [(np.argmax(self.feedforward(x)), np.argmax(y)) for (x, y) in data]
        else:
            results = [(np.argmax(self.feedforward(x)), y) for (x, y) in data]
        return sum(int(x == y) for (x, y) in results)

    def total_cost(self, data, lmbda, convert=False):
        """Mean cost over ``data`` plus the L2 term; ``convert=True`` when y is an int."""
        cost = 0.0
        fn = cost_class(self.cost).fn
        for x, y in data:
            a = self.feedforward(x)
            if convert:
                y = vectorized_result(y)
            cost += fn(a, y) / len(data)
        cost += 0.5 * (lmbda / len(data)) * sum(np.linalg.norm(w) ** 2 for w in self.weights)
        return cost

    def save(self, filename):
        """Save to ``filename`` as the book's JSON document."""
        data = {"sizes": self.sizes,
                "weights": [w.tolist() for w in self.weights],
                "biases": [b.tolist() for b in self.biases],
                "cost": cost_class(self.cost).__name__}
        name = resolve_activation(self.activation_fn).name
        if name != "sigmoid":       # (the book's files have no such key)
            data["activation"] = name
        with open(filename, "w") as f:
            json.dump(data, f)


def load(filename):
    """Load a network saved by ``save``."""
    with open(filename, "r") as f:
        data = json.load(f)
    cost = getattr(sys.modules[__name__], data["cost"])
    net = Network(data["sizes"], cost=cost,
                  activation_fn=data.get("activation", "sigmoid"))
    net.weights = [np.array(w) for w in data["weights"]]
    net.biases = [np.array(b) for b in data["biases"]]
    return net


def vectorized_result(j):
    """A (10, 1) column with 1.0 in position ``j``."""
    e = np.zeros((10, 1))
    e[j] = 1.0
    return e


def sigmoid_prime(z):
    """Derivative of the sigmoid."""
    return sigmoid(z) * (1 - sigmoid(z))


def softmax(z):
    """Softmax over the column ``z``, shifted by its maximum for stability."""
    e = np.exp(z - np.max(z, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)
