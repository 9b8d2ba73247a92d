"""Perceptrons: the gates, XOR by two layers, and why one layer cannot do XOR."""
import doctest

import numpy as np
import pytest

from nndl_fast import perceptron
from nndl_fast.perceptron import (AND, NAND, OR, XOR_INPUTS, XOR_TARGETS, Perceptron,
                                  grid_search, linearly_separable, train, xor)

TRUTH_TABLES = {
    "AND": (AND, [0, 0, 0, 1]),
    "OR": (OR, [0, 1, 1, 1]),
    "NAND": (NAND, [1, 1, 1, 0]),
}


@pytest.mark.parametrize("name", sorted(TRUTH_TABLES))
def test_gate_truth_tables(name):
    gate, expected = TRUTH_TABLES[name]
    # Batched and one-by-one must agree.
    assert gate(XOR_INPUTS).tolist() == expected
    assert [int(gate(x)) for x in XOR_INPUTS] == expected


def test_output_rule_is_strictly_greater_than_zero():
    p = Perceptron([1.0, 1.0], -1.0)
    assert int(p([0.5, 0.5])) == 0          # exactly on the boundary: 0
    assert int(p([0.5, 0.5 + 1e-12])) == 1


def test_xor_network_truth_table():
    assert xor(XOR_INPUTS).tolist() == [0, 1, 1, 0]
    assert [int(xor(x)) for x in XOR_INPUTS] == [0, 1, 1, 0]


def test_learning_rule_learns_separable_gates():
    for gate, expected in TRUTH_TABLES.values():
        p, errors = train(XOR_INPUTS, expected, epochs=100)
        assert errors[-1] == 0 and len(errors) < 100
        assert p(XOR_INPUTS).tolist() == expected


@pytest.mark.parametrize("eta", [0.1, 1.0])
@pytest.mark.parametrize("start", [None, [0.3, -0.7]])
def test_learning_rule_never_solves_xor(eta, start):
    p, errors = train(XOR_INPUTS, XOR_TARGETS, epochs=1000, eta=eta, weights=start)
    assert len(errors) == 1000
    assert min(errors) >= 1
    assert (p(XOR_INPUTS) != XOR_TARGETS).sum() >= 1


def test_grid_search_finds_no_xor_perceptron():
    best, n_perfect = grid_search(XOR_INPUTS, XOR_TARGETS)
    assert (best, n_perfect) == (3, 0)
    # The same grid does contain AND perceptrons, so the search itself works.
    best_and, n_and = grid_search(XOR_INPUTS, [0, 0, 0, 1])
    assert best_and == 4 and n_and > 0


def test_linear_program_decides_separability():
    separable, p = linearly_separable(XOR_INPUTS, XOR_TARGETS)
    assert not separable and p is None
    separable, p = linearly_separable(XOR_INPUTS, XOR_TARGETS ^ 1)  # XNOR: also not
    assert not separable
    for _, expected in TRUTH_TABLES.values():
        separable, p = linearly_separable(XOR_INPUTS, expected)
        assert separable
        assert p(XOR_INPUTS).tolist() == expected


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"expected \(2,\) or \(n, 2\)"):
        AND([1, 0, 1])
    with pytest.raises(TypeError, match="bias must be a real number"):
        Perceptron([1.0], "0")
    with pytest.raises(ValueError, match="NaN or infinity"):
        Perceptron([np.nan], 0.0)
    with pytest.raises(ValueError, match="labels 0 or 1"):
        train(XOR_INPUTS, [0, 1, 1])
    with pytest.raises(ValueError, match="must be 0 or 1"):
        train(XOR_INPUTS, [0, 2, 1, 0])
    with pytest.raises(ValueError, match=r"shape \(n, n_inputs\)"):
        train([0, 1], [0])
    with pytest.raises(ValueError, match="eta must be a positive"):
        train(XOR_INPUTS, XOR_TARGETS, eta=0)


def test_module_doctests():
    result = doctest.testmod(perceptron)
    assert result.attempted > 0 and result.failed == 0
