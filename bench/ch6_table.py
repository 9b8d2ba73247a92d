"""The book's chapter-6 table: ``python -m nndl_fast reproduce ch6`` runs it now.

    python bench/ch6_table.py --list            # the rows with the book's numbers
    python bench/ch6_table.py [OPTIONS]         # = python -m nndl_fast reproduce ch6 [OPTIONS]
    python bench/ch6_table.py --quick --rows fc,conv1

Rows (defined in nndl_fast.reproduce.ROWS; the book's test accuracies in brackets):
fc [97.80%], conv1 [98.78%], conv2 [99.06%], relu [99.23%], expanded [99.37%],
expanded-2fc [99.43%], dropout [99.60%], ensemble of five dropout nets [99.67%].

The benchmark scripts take the rows' layers and hyper-parameters from here:
``M``, ``hyper(row)`` and ``layers_for(row, network3_module)``.
"""
import sys

from nndl_fast import reproduce

M = 10


def _row(name):
    return reproduce.rows_for("ch6", [name])[-1]


def hyper(row):
    """(eta, lmbda, the book's epochs, expanded data?) of a chapter-6 row."""
    r = _row(row)
    if r.module == "ensemble":
        r = _row(r.net)
    return r.eta, r.lmbda, r.epochs, r.expanded


def layers_for(row, N):
    """New layers of a chapter-6 row, built by the module ``N`` (network3 or its reference)."""
    return reproduce.chapter6_layers(row, N)


def main(argv=None):
    from nndl_fast.__main__ import main as cli
    return cli(["reproduce", "ch6"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
