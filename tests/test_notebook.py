"""examples/book_tour.ipynb runs from top to bottom in a fresh kernel."""
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "examples" / "book_tour.ipynb"


def test_book_tour_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "[1, 1, 1, 0]" in text and "Epoch 2: " in text
    assert "Epoch 0: validation accuracy" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4       # monitoring, f(x), speed of learning, filters
