"""The examples run end to end (few epochs) and write their PNGs."""

import importlib.util
import pathlib

import pytest

pytestmark = pytest.mark.slow  # every test here trains models in subprocesses or examples

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", [pytest.param("quickstart", marks=pytest.mark.backend_neutral),
                                  "sampling_and_calibration",
                                  "tfp_distribution_output", "bishop_inverse", "robot_arm",
                                  "missing_targets", "sequence_generation",
                                  "export_and_serve", "real_data", "multi_process",
                                  "tabular_dataframe"])
def test_example_writes_png(tmp_path, name):
    output = tmp_path / f"{name}.png"
    load(name).main(epochs=2, output=str(output))
    assert output.stat().st_size > 10_000
