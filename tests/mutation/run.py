"""One-line mutation testing: do the tests fail when the code is wrong?

Each mutant is one textual replacement in one module of ``mdn_layers``, applied to a
temporary copy of the package; the tests named beside it run against the copy (with
``PYTHONPATH`` pointing there first). A mutant that every test survives marks a feature whose
tests cannot fail. Not run by the test suite (it takes minutes); run it when a feature lands,
and add that feature's own mutants to ``MUTANTS``.

    python tests/mutation/run.py [--only NAME ...] [--list]

Prints one line per mutant (caught or SURVIVED) and the score.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]

# name: (module, original text, mutated text, tests to run)
MUTANTS = {
    "layer ignores diag_shift": (
        "head.py", "self.diag_shift = validation.check_nonnegative_float(diag_shift, "
        "\"diag_shift\")", "self.diag_shift = 1e-5",
        "tests/training/test_layer.py -k diag_shift"),
    "energy spread weighted 1": (
        "marginals.py", "return (to_value - 0.5 * spread) / first.shape[0]",
        "return (to_value - spread) / first.shape[0]",
        "tests/training/test_metrics.py tests/analysis/test_scores.py"),
    "metrics ignore sample_weight": (
        "metrics.py", "            weight = weight * sample_weight",
        "            weight = weight", "tests/training/test_metrics.py"),
    "probability accepts 0 and 1": (
        "validation.py", "if not 0 < value < 1:", "if not 0 <= value <= 1:",
        "tests/training/test_metrics.py"),
    "correlated_2d sign flipped": (
        "datasets.py", "tril(0.2, 0.3, -0.6)", "tril(0.2, 0.3, 0.6)",
        "tests/analysis/test_datasets.py"),
    "condition stops the gradient of the shift": (
        "conditioning.py", "        loc = _gather_dims(parts.loc, unobserved) + shift",
        "        loc = _gather_dims(parts.loc, unobserved) + tf.stop_gradient(shift)",
        "tests/analysis/test_conditioning.py -k finite_diff"),
    "adapt ignores the target scale": (
        "layout.py", "    linear = params * multiplier + shift",
        "    linear = params + shift", "tests/training/test_head.py"),
    "ensemble ignores member weights": (
        "ensembles.py", "    return tf.constant(np.log(weights / weights.sum()), dtype)",
        "    return tf.fill([num_members], tf.constant(-np.log(num_members), dtype))",
        "tests/analysis/test_ensembles.py"),
    "Givens rotation sign flipped": (
        "triangular.py", "-s * p if p is not None else None", "s * p if p is not None else None",
        "tests/analysis/test_mixtures.py -k permuted"),
    "loss broadcasts mis-ranked targets": (
        "targets.py", "        if len(leading_true) != len(leading_pred) or any(",
        "        if False and any(", "tests/training/test_losses.py -k leading_axes"),
    "mode returns the mean": (
        "tfp_layers.py", '    "mode": summaries.mode,',
        '    "mode": tfp.distributions.Distribution.mean,',
        "tests/integration/test_tfp_layers.py -k mode"),
    "missing-target rows use the full factor": (
        "densities.py", "        rows = ([[observed[e] * entry(e, d) if e >= d else None",
        "        rows = ([[entry(e, d) if e >= d else None",
        "tests/training/test_losses.py -k missing"),
    "loss built for a layer drops its diag_shift": (
        "losses.py", "        return cls(**layer.mixture_config(), **kwargs)",
        "        return cls(**{key: value for key, value in layer.mixture_config().items()\n"
        "                      if key != 'diag_shift'}, **kwargs)",
        "tests/training/test_layer.py -k diag_shift"),
    "layer ignores loc_spread": (
        "layer.py", "keras.initializers.RandomNormal(stddev=self.loc_spread)",
        "keras.initializers.RandomNormal(stddev=1.0)",
        "tests/training/test_layer.py -k loc_spread"),
    "coverage averages over missing dims": (
        "metrics.py", "        return _mean_over_observed(inside, observed)",
        "        return ops.mean(inside, axis=-1)", "tests/training/test_metrics.py"),
    "energy score ignores the missing mask": (
        "metrics.py", "            ops.reshape(observed, (-1, self.event_size)))",
        "            None)", "tests/training/test_metrics.py"),
    "one-SE rule picks the smallest level": (
        "schedule.py", "def one_standard_error_choice(held_out_nll, simplest=max):",
        "def one_standard_error_choice(held_out_nll, simplest=min):",
        "tests/training/test_schedule.py -k standard_error"),
    "one-SE rule ignores the error": (
        "schedule.py", "means[level] <= means[best] + standard_error)",
        "means[level] <= means[best])", "tests/training/test_schedule.py -k standard_error"),
    "noisy inputs at prediction time too": (
        "networks.py", "        layers.append(keras.layers.GaussianNoise(input_noise))",
        "        layers.append(keras.layers.Lambda(lambda t: t + input_noise))",
        "tests/training/test_tabular.py -k raw_units"),
}


def run_mutant(name, module, original, mutated, tests, workdir):
    package = workdir / "mdn_layers"
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(ROOT / "mdn_layers", package)
    # The floors' module of that name (the top level holds only bridges and public aliases).
    path = sorted(package.rglob(module), key=lambda found: found.parent == package)[0]
    source = path.read_text()
    if source.count(original) != 1:
        return f"{name}: the original line is not found exactly once in {module} (update it)"
    path.write_text(source.replace(original, mutated))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT / "tests")]),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Run from the copy's folder, so `import mdn_layers` finds the mutant first.
    arguments = [str(ROOT / part) if part.startswith("tests/") else part
                 for part in tests.split()]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                             "--rootdir", str(ROOT), *arguments], cwd=workdir, env=env,
                            capture_output=True, text=True)
    return f"{name}: {'caught' if result.returncode != 0 else 'SURVIVED'}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="mutant names to run")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    args = parser.parse_args()
    names = args.only or list(MUTANTS)
    if args.list:
        print("\n".join(names))
        return
    with tempfile.TemporaryDirectory() as tmp:
        lines = [run_mutant(name, *MUTANTS[name], pathlib.Path(tmp)) for name in names]
    for line in lines:
        print(line)
    caught = sum(line.endswith("caught") for line in lines)
    print(f"score: {caught} of {len(lines)} mutants caught")


if __name__ == "__main__":
    main()
