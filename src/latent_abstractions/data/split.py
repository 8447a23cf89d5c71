"""The sizes of the train/test split, apart from the split itself so that the pre-flight check can use them.

:func:`shapes3d.make_split` draws a split of exactly these sizes; ``preflight.py`` checks the configured sample
sizes against them before any job runs (this module imports no torch, so that check stays fast).
"""

from __future__ import annotations


def split_sizes(n_images: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) image counts of a split of ``n_images`` with ``test_fraction`` of them held out (at least one).

    Raises:
        ValueError: unless 0 < test_fraction < 1.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = max(1, int(round(n_images * test_fraction)))
    return n_images - n_test, n_test
