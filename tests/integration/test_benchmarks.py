"""The benchmark pipeline works end to end (tiny sizes); its numbers are not checked here."""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCHMARKS)

import bench_fit  # noqa: E402
import run_all  # noqa: E402


def _rows():
    rows = []
    for repeat, scale in enumerate([1.0, 1.2]):
        rows.append([
            {"head": "ours full", "backend": "jax", "D": 8, "K": 16, "first_epoch_s": 2.0,
             "samples_per_s": 150e3 * scale, "loss": 1.0},
            {"head": "ours diag", "backend": "jax", "D": 8, "K": 16, "first_epoch_s": 1.0,
             "samples_per_s": 300e3 * scale, "loss": 1.0},
            {"head": "keras-mdn-layer diag", "backend": "tensorflow", "D": 8, "K": 16,
             "first_epoch_s": 1.0, "samples_per_s": 200e3 * scale, "loss": 1.0},
            {"head": "tfp.layers full", "backend": "tf_keras", "D": 8, "K": 16,
             "first_epoch_s": 1.0, "samples_per_s": 50e3 * scale, "loss": 1.0},
            {"head": "tfp.layers full, jit_compile", "backend": "tf_keras", "D": 8, "K": 16,
             "error": "InvalidArgumentError: no"},
        ])
    return rows


def test_fit_summary_takes_medians_and_ratios_against_each_peers_best():
    table = bench_fit.summarise(_rows())
    full = next(r for r in table if r["head"] == "ours full")
    assert full["samples_per_s"] == pytest.approx(165e3) and full["range"] == (150e3, 180e3)
    targets = {(t["ours"], t["peer"]): t for t in bench_fit.ratios(table)}
    assert targets[("ours full", "tfp.layers")]["ratio"] == pytest.approx(3.0)
    assert targets[("ours diag", "keras-mdn-layer")]["ratio"] == pytest.approx(1.5)
    text = bench_fit.markdown(table, bench_fit.ratios(table), {
        "machine": "m", "keras": "3", "samples": 1, "epochs": 1, "repeats": 2,
        "jit_compile": "true", "steps_per_execution": "1,8"})
    assert "fails: InvalidArgumentError" in text and "| 3.00x | 1.5x |" in text


def test_plot_writes_a_png(tmp_path):
    table = bench_fit.summarise(_rows())
    results = {
        "fit": {"rows": table, "targets": bench_fit.ratios(table)},
        "conditioning": {"meta": {"num_mixtures": 10, "K": 8, "D": 6},
                         "rows": [{"method": "numpy", "seconds": 1.0},
                                  {"method": "mdn_layers.condition, float32, eager",
                                   "seconds": 0.1}]},
        "accuracy": {"rows": [{"task": "t", "head": h, "gap": g}
                              for h, g in [("a", 0.01), ("b", 0.2)]]},
    }
    run_all.plot(results, tmp_path / "results.png")
    assert (tmp_path / "results.png").stat().st_size > 10_000


@pytest.mark.slow
def test_run_all_quick_writes_the_report(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "run_all.py"), "--quick", "--only",
         "conditioning", "--out", str(tmp_path)], capture_output=True, text=True,
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "RESULTS.md").read_text()
    assert "## Conditioning" in report and "| numpy float64, vectorised" in report
    assert (tmp_path / "results.png").exists()


@pytest.mark.slow
def test_uci_benchmark_smoke_run_reports_every_method(tmp_path):
    """Two small standard tables, two splits, three epochs, an ensemble of two: the pipeline,
    not the numbers (the full run is in benchmarks/README.md). Peers need the bench extras."""
    import json
    out = tmp_path / "uci.json"
    peers = [] if _has("ngboost") and _has("keras_mdn_layer") else ["--no-peers"]
    command = [sys.executable, os.path.join(BENCHMARKS, "bench_uci.py"), "--tables", "yacht",
               "wine", "--splits", "0", "1", "--max-epochs", "3", "--members", "2",
               "--results", str(tmp_path / "splits"), "--json", str(out), "--markdown",
               str(tmp_path / "uci.md")] + peers
    subprocess.run(command, check=True, timeout=900, env={**os.environ, "KERAS_BACKEND": "jax"})
    rows = json.loads(out.read_text())["rows"]
    methods = {(row["table"], row["method"]) for row in rows}
    for table in ("yacht", "wine"):
        assert {(table, "mdn_layers single"), (table, "mdn_layers ensemble of 2")} <= methods
    assert ("wine", "mdn_layers single (dequantized, cell NLL)") in methods
    assert all(row["splits"] == 2 and np.isfinite(row["mean"]) for row in rows)
    assert all(0 <= row["coverage"] <= 1 for row in rows if row["coverage"] is not None)
    assert len(list((tmp_path / "splits").glob("*.json"))) == 4
    # A rerun resumes: every split is on disk, so nothing trains again.
    started = __import__("time").perf_counter()
    subprocess.run(command, check=True, timeout=300, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert __import__("time").perf_counter() - started < 60
    report = (tmp_path / "uci.md").read_text()
    assert "| wine | mdn_layers single |" in report
    assert "* ensemble beats Deep Ensembles on " in report and " of 2 (target: all nine" in report


@pytest.mark.parametrize("name, rows, inputs, splits, train, test", [
    ("boston", 506, 13, 20, 455, 51), ("concrete", 1030, 8, 20, 927, 103),
    ("energy", 768, 8, 20, 691, 77), ("kin8nm", 8192, 8, 20, 7373, 819),
    ("naval", 11934, 16, 20, 10741, 1193), ("power", 9568, 4, 20, 8611, 957),
    ("protein", 45730, 9, 5, 41157, 4573), ("wine", 1599, 11, 20, 1439, 160),
    ("yacht", 308, 6, 20, 277, 31)])
def test_standard_split_files_are_read_exactly(name, rows, inputs, splits, train, test):
    import uci
    table = uci.load(name)
    assert table.x.shape == (rows, inputs) and table.y.shape == (rows, 1)
    assert table.train.shape == (splits, train) and table.test.shape == (splits, test)
    assert table.n_hidden == (100 if name == "protein" else 50)
    assert len(table.data_sha256) == 64
    for split in range(splits):
        tr, te = table.train[split], table.test[split]
        assert len(np.unique(tr)) == train and len(np.unique(te)) == test   # no repeats
        assert not np.intersect1d(tr, te).size                             # disjoint
        assert tr.min() >= 0 and max(tr.max(), te.max()) < rows
    # The splits differ from one another, and the targets are the tables' own.
    assert not np.array_equal(table.test[0], table.test[1])
    assert np.all(np.isfinite(table.x)) and np.all(np.isfinite(table.y))


def test_standard_tables_hold_their_known_targets():
    import uci
    wine = uci.load("wine").y[:, 0]
    assert set(np.unique(wine)) == {3.0, 4.0, 5.0, 6.0, 7.0, 8.0}       # quality scores
    boston = uci.load("boston").y[:, 0]
    assert boston.max() == 50.0 and np.isclose(boston.mean(), 22.5328, atol=1e-4)
    with pytest.raises(ValueError, match="`name` must be one of"):
        uci.load("iris")


def _has(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def test_uci_targets_count_wine_by_its_better_honest_variant():
    import bench_uci
    rows = [{"table": "wine", "method": m, "mean": v, "coverage": c} for m, v, c in (
        ("mdn_layers single", 1.13, 0.99), ("mdn_layers ensemble of 5", 1.12, 0.99),
        ("mdn_layers single (dequantized, cell NLL)", 0.93, 0.93),
        ("mdn_layers ensemble of 5 (dequantized, cell NLL)", 0.90, 0.96))]
    lines = bench_uci.targets(rows)
    assert lines[0].startswith("* ensemble beats Deep Ensembles on 1 of 1")    # 0.90 < 0.94
    assert "wine 0.930 vs 0.94" not in lines[2] and "on 1 of 1" in lines[2]
    assert lines[-1].endswith("wine mdn_layers ensemble of 5 (dequantized, cell NLL) 96.0%")
