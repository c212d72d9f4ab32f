"""The command line the examples share, read before TensorFlow loads so ``--help`` answers
at once: ``--epochs``, ``--long`` (4x the epochs), ``--quiet``, ``--output`` and any extras."""

import argparse


def parse_args(doc, epochs, output, long=True, extra=()):
    """Parsed options of an example whose module docstring is ``doc``.

    ``extra``: ``(flag, keyword arguments of add_argument)`` pairs for the example's own
    options.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    if long:
        parser.add_argument("--long", action="store_true", help="train 4x longer")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--output", default=output, help="PNG to write")
    for flag, options in extra:
        parser.add_argument(flag, **options)
    return parser.parse_args()
