"""Grids: the same grid in a pair of stores, and latitude stored descending."""

from __future__ import annotations

import numpy as np

from wxeval import schema
from wxeval.check.stores import _raw_name, _Store
from wxeval.schema import LATITUDE


class _GridChecks:
    def check_grid(self, a: _Store, b: _Store) -> None:
        pair = (a.name, b.name)
        if pair in self._grid_pairs:
            return
        self._grid_pairs.add(pair)
        try:
            schema.check_same_grid(a.ds, b.ds, a.name, b.name)
        except schema.SchemaError as err:
            self.add("error", "grid", a.name, "", str(err))
        for st in (a, b):
            lat_name = _raw_name(st, LATITUDE)
            if lat_name in st.raw.coords:
                lat = np.asarray(st.raw[lat_name].values, dtype=float)
                key = (st.name, "latitude-order", ())
                if lat.size > 1 and lat[0] > lat[-1] and key not in self._sampled:
                    self._sampled.add(key)
                    self.add(
                        "info",
                        "latitude-order",
                        st.name,
                        "",
                        f"{st.name}: latitude stored descending (90 → -90); read ascending",
                    )
