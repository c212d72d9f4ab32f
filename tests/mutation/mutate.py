"""Mutation testing with mutmut, one module at a time, in a scratch copy of the project.

    python tests/mutation/mutate.py mdn_layers/core/densities.py [more modules]
    python tests/mutation/mutate.py --changed main     # the modules changed since main
    python tests/mutation/mutate.py mdn_layers/training/head.py --only "*_init_mixture_config*"
    KERAS_BACKEND=jax python tests/mutation/mutate.py mdn_layers/training/targets.py \
        --marker backend_neutral        # code that only another Keras backend reaches

For each module, copies ``pyproject.toml`` (its ``[tool.mutmut]`` table pointed at the module
and at the tests that reach it, from ``TESTS`` below), ``mdn_layers/`` and ``tests/`` into
``.mutation/<dotted module>[-<backend>]/`` (ignored by git and kept: a rerun resumes, and mutmut
re-tests only the functions that changed since), runs ``mutmut run`` there and prints the
diff of every mutant that no test killed. Each survivor either gets a test that kills it or,
when it cannot change any result, a line in the equivalent list of
``tests/mutation/README.md``. Exits 1 when a module has survivors (equivalent ones
included: compare them with the list).
"""

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

_ANALYSIS = ["tests/analysis/test_scores.py", "tests/analysis/test_summaries.py",
             "tests/analysis/test_sampling.py", "tests/analysis/test_ensembles.py",
             "tests/analysis/test_datasets.py", "tests/analysis/test_row_chunks.py"]
_TRAINING = ["tests/training/test_losses.py", "tests/training/test_metrics.py",
             "tests/integration/test_backends.py::test_masked_steps_stay_out_of_loss_metrics"
             "_and_gradients"]

# The tests each maths module's mutants run (mutmut runs, of these, only those that reach
# the mutated function). A module not named here gets its mirror, tests/<floor>/test_<name>.py.
TESTS = {
    "mdn_layers/core/densities.py": ["tests/core", "tests/analysis"],
    "mdn_layers/core/draws.py": ["tests/core", "tests/analysis"],
    "mdn_layers/core/marginals.py": ["tests/core", "tests/analysis"],
    "mdn_layers/core/layout.py": ["tests/core"],
    "mdn_layers/core/triangular.py": ["tests/core"],
    "mdn_layers/core/target_statistics.py": ["tests/core/test_target_statistics.py"],
    "mdn_layers/training/schedule.py": ["tests/training/test_schedule.py"],
    "mdn_layers/training/losses.py": _TRAINING,
    "mdn_layers/training/metrics.py": _TRAINING,
    "mdn_layers/training/targets.py": _TRAINING,
    "mdn_layers/analysis/scores.py": _ANALYSIS,
    "mdn_layers/analysis/summaries.py": _ANALYSIS,
    "mdn_layers/analysis/sampling.py": _ANALYSIS,
    "mdn_layers/analysis/ensembles.py": _ANALYSIS,
    "mdn_layers/analysis/datasets.py": _ANALYSIS,
    "mdn_layers/training/head.py": ["tests/training/test_head.py"],
    "mdn_layers/training/layer.py": ["tests/training/test_layer.py"],
    "mdn_layers/training/networks.py": ["tests/training/test_tabular.py"],
    # Less its five slowest tests (two thirds of its time: the float32-against-float64 check
    # in a graph and under XLA, training, tf.function retracing, the chain rule), which every
    # mutant of conditioning reaches; a survivor is rerun against them by hand.
    "mdn_layers/analysis/conditioning.py": ["tests/analysis/test_conditioning.py",
                                            "tests/analysis/test_row_chunks.py"] + [
        "--deselect=tests/analysis/test_conditioning.py::" + test for test in (
            "test_float32_conditioning_matches_float64[xla]",
            "test_float32_conditioning_matches_float64[graph]",
            "test_training_with_missing_targets_stays_finite",
            "test_condition_inside_tf_function[False]", "test_chain_rule")],
    "mdn_layers/analysis/mixtures.py": ["tests/analysis/test_mixtures.py", *_ANALYSIS,
                                        "tests/integration/test_prediction.py"],
    "mdn_layers/training/keras_ops.py": ["tests/integration/test_ops_namespaces.py",
                                         "tests/training/test_layer.py::test_training_softplus"
                                         "_and_its_gradient_against_closed_forms"],
    "mdn_layers/analysis/tf_ops.py": ["tests/integration/test_ops_namespaces.py",
                                      "tests/analysis/test_mixtures.py"],
}


def tests_for(module):
    """The test paths for one module of ``mdn_layers`` (a path relative to the root), or None
    when none are known (the top level's public aliases, say)."""
    if module in TESTS:
        return TESTS[module]
    path = pathlib.PurePosixPath(module)
    floor = path.parent.name if path.parent.name != "mdn_layers" else "integration"
    mirror = f"tests/{floor}/test_{path.stem}.py"
    return [mirror] if (ROOT / mirror).exists() else None


def changed_modules(base):
    """The package's Python modules that differ from ``base`` (committed or not)."""
    names = subprocess.run(["git", "diff", "--name-only", base, "--", "mdn_layers"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    return [name for name in names if name.endswith(".py") and (ROOT / name).exists()
            and not name.endswith("__init__.py")]


def _configured(pyproject, module, tests, marker=None):
    """``pyproject.toml``'s text with ``[tool.mutmut]`` naming this module and its tests."""
    selection = ", ".join(f'"{test}"' for test in tests + (["-m", marker] if marker else []))
    keys = f'source_paths = ["{module}"]\npytest_add_cli_args_test_selection = [{selection}]\n'
    text = re.sub(r"^(source_paths|pytest_add_cli_args_test_selection) = .*\n", "", pyproject,
                  flags=re.MULTILINE)
    return text.replace("[tool.mutmut]\n", "[tool.mutmut]\n" + keys, 1)


def mutate(module, workdir, max_children, only=(), marker=None):
    """Runs mutmut on one module in ``workdir`` (on the mutants whose names match a glob of
    ``only``, if any); returns the names of its survivors."""
    tests = tests_for(module)
    if tests is None:
        print(f"{module}: skipped, no tests known (add them to TESTS in {__file__})")
        return []
    workdir.mkdir(parents=True, exist_ok=True)
    for folder in ("mdn_layers", "tests"):
        shutil.copytree(ROOT / folder, workdir / folder, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (workdir / "pyproject.toml").write_text(
        _configured((ROOT / "pyproject.toml").read_text(), module, tests, marker))
    command = (["mutmut", "run"] + (["--max-children", str(max_children)] if max_children else [])
               + list(only))
    if subprocess.run(command, cwd=workdir).returncode:
        print(f"{module}: mutmut failed (see its output above)")
        return ["(mutmut failed)"]
    results = subprocess.run(["mutmut", "results"], cwd=workdir, check=True,
                             capture_output=True, text=True).stdout
    survivors = [line.split(":")[0].strip() for line in results.splitlines()
                 if line.strip() and not line.strip().endswith((": killed", ": not checked"))]
    for name in survivors:
        print(subprocess.run(["mutmut", "show", name], cwd=workdir, capture_output=True,
                             text=True).stdout)
    print(f"{module}: {len(survivors)} mutants not killed")
    return survivors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module paths, e.g. mdn_layers/core/draws.py")
    parser.add_argument("--changed", metavar="BASE", help="also every module changed since BASE")
    parser.add_argument("--only", nargs="+", default=(), metavar="GLOB",
                        help="only the mutants whose names match, e.g. '*_kmeans*'")
    parser.add_argument("--marker", help="only the tests with this pytest marker expression "
                        "(backend_neutral, under another KERAS_BACKEND)")
    parser.add_argument("--max-children", type=int, help="parallel mutants (mutmut's default: "
                        "the number of cores)")
    args = parser.parse_args()
    modules = list(dict.fromkeys(args.modules + (changed_modules(args.changed)
                                                 if args.changed else [])))
    if not modules:
        parser.error("name at least one module, or --changed BASE")
    backend = os.environ.get("KERAS_BACKEND")
    survived = {module: mutate(module, ROOT / ".mutation" / "-".join(filter(None, [
        str(pathlib.PurePosixPath(module).with_suffix("")).replace("/", "."), backend])),
        args.max_children, args.only, args.marker) for module in modules}
    sys.exit(1 if any(survived.values()) else 0)


if __name__ == "__main__":
    main()
