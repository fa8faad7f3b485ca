"""Compare two results tables (``<output>/<model>.nc``) value by value: "every number unchanged".

Usage: ``python scripts/compare_tables.py OLD.nc NEW.nc``

For each variable, prints the largest difference relative to that variable's largest score
(float64 rounding of sums taken in another order gives ~1e-16) and the largest relative
difference (large only for values near 0 by cancellation, such as a small bias), and counts
cells that are NaN in one table only. Exit status 1 when the coordinates differ, a NaN
pattern differs, or a difference exceeds ``--tolerance`` of the variable's largest score.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from wxeval.results import read_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--tolerance", type=float, default=1e-12,
                        help="largest difference allowed, as a fraction of a variable's "
                             "largest score (default 1e-12)")
    args = parser.parse_args()
    old, new = read_table(args.old), read_table(args.new)
    failed = False
    if set(old.data_vars) != set(new.data_vars):
        print(f"variables differ: {sorted(set(old.data_vars) ^ set(new.data_vars))}")
        return 1
    for var in sorted(old.data_vars):
        a = old[var]
        try:
            b = new[var].transpose(*a.dims).sel({d: a[d].values for d in a.dims})
        except (KeyError, ValueError) as err:
            print(f"{var}: coordinates differ ({err})")
            failed = True
            continue
        x, y = np.asarray(a.values, float), np.asarray(b.values, float)
        nan_only = int((np.isnan(x) != np.isnan(y)).sum())
        both = np.isfinite(x) & np.isfinite(y)
        scale = float(np.abs(x[both]).max()) if both.any() else 1.0
        diff = np.abs(x[both] - y[both])
        of_scale = float(diff.max() / scale) if diff.size else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = diff / np.abs(x[both])
        rel_max = float(np.nanmax(rel)) if rel.size else 0.0
        print(f"{var:28s} max |difference| / largest score {of_scale:.1e}; "
              f"max relative {rel_max:.1e}; NaN in one table only: {nan_only}")
        failed |= nan_only > 0 or of_scale > args.tolerance
    print("FAILED" if failed else "unchanged (within the tolerance)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
