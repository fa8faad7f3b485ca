"""Regions and area weights.

Area weights follow WeatherBench 2: for increasing latitudes φ_i (radians) with cell bounds
b_0 = −π/2, b_k = (φ_{k−1} + φ_k)/2, b_I = +π/2, the weight of row i is
w_i = sin(b_{i+1}) − sin(b_i), normalised to mean 1. Weights are always computed on the *full*
grid: a region is a 0/1 (or land-fraction) mask multiplied into them, never a latitude slice.

A region's mean of a field x is ⟨x⟩_R = Σ W_ij x_ij / Σ W_ij with W_ij = w_i · m_ij.
Latitude and longitude bounds are inclusive; longitudes are 0..360.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

_TOL = 1e-6
#: Land classes summed over whole fields by the kernel at most (:meth:`RegionReducer.land_classes`:
#: each costs A × B float64 of weights and a pass over each field per two classes); with more,
#: the kernel's row loops take the land products.
MAX_LAND_CLASSES = 3
#: ... and their weights at most this many bytes: the whole-field sums pay off while fields and
#: weights stay in cache (1.5°: 0.45 MB, 1°: 1.6 MB); at 0.25° (25 MB) streaming the weights
#: costs more than the row loops' six accumulators.
MAX_LAND_CLASS_BYTES = 4 << 20


def area_weights(latitude: np.ndarray) -> np.ndarray:
    """Latitude weights w_i (mean 1) of an ascending latitude axis given in degrees."""
    lat = np.deg2rad(np.asarray(latitude, dtype=np.float64))
    if lat.ndim != 1 or lat.size < 2 or np.any(np.diff(lat) <= 0):
        raise ValueError("area_weights needs a 1-D strictly increasing latitude axis")
    bounds = np.concatenate([[-np.pi / 2], (lat[:-1] + lat[1:]) / 2, [np.pi / 2]])
    w = np.sin(bounds[1:]) - np.sin(bounds[:-1])
    return w / w.mean()


@dataclass(frozen=True)
class Region:
    """A union of latitude bands × a union of longitude bands (degrees, inclusive bounds).

    ``land=True`` multiplies the mask by the land-sea-mask fraction (0..1).
    """

    name: str
    lat_bands: tuple[tuple[float, float], ...] = ((-90.0, 90.0),)
    lon_bands: tuple[tuple[float, float], ...] = ((0.0, 360.0),)
    land: bool = False
    description: str = field(default="", compare=False)

    def mask(self, latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
        """0/1 mask of shape (latitude, longitude), before any land fraction."""
        lat = np.asarray(latitude, dtype=np.float64)
        lon = np.mod(np.asarray(longitude, dtype=np.float64), 360.0)
        in_lat = np.zeros(lat.shape, bool)
        for lo, hi in self.lat_bands:
            in_lat |= (lat >= lo - _TOL) & (lat <= hi + _TOL)
        in_lon = np.zeros(lon.shape, bool)
        for lo, hi in self.lon_bands:
            in_lon |= (lon >= lo - _TOL) & (lon <= hi + _TOL)
        return (in_lat[:, None] & in_lon[None, :]).astype(np.float64)

    def key(self) -> str:
        """A stable identity of the definition (name + bounds + land), for statistics caching."""
        payload = json.dumps([self.name, self.lat_bands, self.lon_bands, self.land], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _box(name: str, lat: tuple[float, float], *lons: tuple[float, float]) -> Region:
    return Region(name, (lat,), tuple(lons) if lons else ((0.0, 360.0),))


#: The 13 WeatherBench 2 boxes (shared/README.md §3).
STANDARD_REGIONS: dict[str, Region] = {
    r.name: r
    for r in [
        Region("global"),
        _box("tropics", (-20, 20)),
        Region("extra-tropics", ((-90, -20), (20, 90))),
        _box("northern-hemisphere", (20, 90)),
        _box("southern-hemisphere", (-90, -20)),
        _box("europe", (35, 75), (347.5, 360), (0, 42.5)),
        _box("north-america", (25, 60), (240, 285)),
        _box("north-atlantic", (25, 65), (290, 350)),
        _box("north-pacific", (25, 60), (145, 230)),
        _box("east-asia", (25, 60), (102.5, 150)),
        _box("ausnz", (-45, -12.5), (120, 175)),
        _box("arctic", (60, 90)),
        _box("antarctic", (-90, -60)),
    ]
}

#: Land regions: the base box weighted by the land-sea-mask fraction.
LAND_REGIONS: dict[str, Region] = {
    f"{base}_land": Region(
        f"{base}_land",
        STANDARD_REGIONS[base].lat_bands,
        STANDARD_REGIONS[base].lon_bands,
        land=True,
    )
    for base in ("global", "extra-tropics", "tropics")
}


def custom_region(name: str, lat: Sequence[float], lon: Sequence[float], land: bool = False):
    """A user box; ``lon`` may wrap (e.g. [350, 20]) and is split into two bands."""
    lat_lo, lat_hi = float(lat[0]), float(lat[1])
    if not -90 <= lat_lo <= lat_hi <= 90:
        raise ValueError(
            f"region {name!r}: latitude bounds {list(lat)} must be -90 <= lo <= hi <= 90"
        )
    lon_lo, lon_hi = float(lon[0]) % 360.0, float(lon[1]) % 360.0
    if float(lon[1]) - float(lon[0]) >= 360:
        bands: tuple[tuple[float, float], ...] = ((0.0, 360.0),)
    elif lon_lo <= lon_hi:
        bands = ((lon_lo, lon_hi),)
    else:
        bands = ((lon_lo, 360.0), (0.0, lon_hi))
    return Region(name, ((lat_lo, lat_hi),), bands, land=land)


def resolve_regions(
    names: str | Iterable[str] | None,
    custom: Sequence[Region] = (),
    *,
    has_land_sea_mask: bool,
) -> list[Region]:
    """Resolve ``"all"``/``None`` or a list of names to Region objects (custom boxes included).

    ``all`` = the 13 standard boxes, the three land regions when a land-sea mask is available,
    and every custom box. Unknown names raise ``ValueError`` with a suggestion.
    """
    known = dict(STANDARD_REGIONS)
    if has_land_sea_mask:
        known.update(LAND_REGIONS)
    for region in custom:
        known[region.name] = region
    if names is None or names == "all":
        return list(known.values())
    if isinstance(names, str):
        names = [names]
    out = []
    for name in names:
        if name == "all":
            out.extend(r for r in known.values() if r not in out)
            continue
        if name not in known:
            if name in LAND_REGIONS:
                raise ValueError(
                    f"region {name!r} needs a land_sea_mask (in the truth store or "
                    "`land_sea_mask: {path}` in the config)"
                )
            hint = difflib.get_close_matches(name, known, n=1)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(f"unknown region {name!r}{suffix} (known: {', '.join(known)})")
        if known[name] not in out:
            out.append(known[name])
    return out


class RegionReducer:
    """The structure of all region weights of one grid, for the compiled kernel.

    Every region's weight is separable, W_ij = w_i · a_i · b_j · (λ_ij if land), with w the
    area weights, a/b its latitude/longitude masks and λ the land fraction. Longitudes are cut
    into *segments* (maximal runs on which every region's longitude mask is constant), and
    latitudes likewise; the kernel (:mod:`wxeval.kernels`) sums each product per latitude
    segment over every longitude, and per (latitude segment × longitude segment) cell only where
    a region that does not span every longitude needs it, so a region's sum is a short sum of
    those (its careful path, for fields with NaN or ±inf, sums per latitude row and longitude
    segment).

    Fields have shape (..., A, B) where (A, B) is (longitude, latitude) (``lon_axis=-2``, the
    WeatherBench 2 storage order) or (latitude, longitude) (``lon_axis=-1``).
    """

    def __init__(
        self,
        regions: Sequence[Region],
        latitude: np.ndarray,
        longitude: np.ndarray,
        land_sea_mask: np.ndarray | None = None,
        *,
        lon_axis: int = -2,
    ):
        if lon_axis not in (-1, -2):
            raise ValueError("lon_axis must be -1 or -2")
        self.regions = tuple(regions)
        self.lon_axis = lon_axis
        self.nlat, self.nlon = len(latitude), len(longitude)
        w = area_weights(latitude)
        lat_masks, lon_masks = [], []
        for r in self.regions:
            dense = r.mask(latitude, longitude)
            if not dense.any():
                raise ValueError(f"region {r.name!r} contains no grid point of this grid")
            if r.land and land_sea_mask is None:
                raise ValueError(f"region {r.name!r} needs a land_sea_mask")
            lat_masks.append(dense.any(axis=1))
            lon_masks.append(dense.any(axis=0))
        lon_masks_arr = np.array(lon_masks, dtype=bool)  # (R, nlon)
        # A new segment starts wherever any region's longitude membership changes.
        change = np.ones(self.nlon, dtype=bool)
        change[1:] = np.any(lon_masks_arr[:, 1:] != lon_masks_arr[:, :-1], axis=0)
        self.seg_of_lon = (np.cumsum(change) - 1).astype(np.int64)
        self.nseg = int(self.seg_of_lon[-1]) + 1
        first = np.flatnonzero(change)
        self.region_segs = lon_masks_arr[:, first].copy()  # (R, nseg)
        self.region_latw = np.array([w * m for m in lat_masks], dtype=np.float64)  # (R, nlat)
        # Latitude segments likewise (maximal row runs on which every region's latitude mask is
        # constant): the kernel's totals and cells are per latitude segment, in both orders.
        self.area_weights = np.asarray(w, dtype=np.float64)
        lat_masks_arr = np.array(lat_masks, dtype=bool)  # (R, nlat)
        lat_change = np.ones(self.nlat, dtype=bool)
        lat_change[1:] = np.any(lat_masks_arr[:, 1:] != lat_masks_arr[:, :-1], axis=0)
        lat_first_rows = np.flatnonzero(lat_change)
        self.lat_seg_start = np.append(lat_first_rows, self.nlat).astype(np.int64)
        self.region_latsegs = lat_masks_arr[:, lat_first_rows].copy()  # (R, latitude segments)
        self.region_land = np.array([int(r.land) for r in self.regions], dtype=np.int64)
        self.use_land = bool(self.region_land.any())
        if land_sea_mask is not None:
            lsm = np.clip(np.nan_to_num(np.asarray(land_sea_mask, float), nan=0.0), 0.0, 1.0)
        else:
            lsm = np.zeros((self.nlat, self.nlon))
        self.lsm = np.ascontiguousarray(lsm.T if lon_axis == -2 else lsm)  # (A, B)
        # Σ W per region from the separable parts (no dense (R, lat, lon) array: 127 MB at
        # 0.25° for 16 regions): Σ_i w_i a_i Σ_j b_j (λ_ij for land regions, else 1).
        per_row = np.array([
            lsm @ lon_masks_arr[k] if r.land else np.full(self.nlat, lon_masks_arr[k].sum())
            for k, r in enumerate(self.regions)
        ], dtype=np.float64)  # (R, nlat)
        self._weight_sums = np.einsum("ri,ri->r", self.region_latw, per_row)
        self._land_classes: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_regions(self) -> int:
        return len(self.regions)

    def land_classes(self) -> tuple[np.ndarray, np.ndarray]:
        """The land regions' latitude segments by class, for the kernel's whole-field land sums:
        ``(first, weights)``, ``first[q]`` the first latitude segment of class q and
        ``weights[q]`` (A, B) in the fields' storage order, w_i λ_ij on the rows of class q's
        segments and 0 elsewhere. A class is the latitude segments held by the same land
        regions (WB2's three land regions: two or three classes), so a land region spanning
        every longitude holds every segment of a class or none.

        Empty (no class) when there is no land region, when a land region does not span every
        longitude (its sums need cells), when there are more than :data:`MAX_LAND_CLASSES`
        classes or their weights exceed :data:`MAX_LAND_CLASS_BYTES`, or for fields stored
        (lat, lon), whose row loops sum whole rows in registers anyway (faster there from 1°
        on): the kernel's row loops then take the land products. Computed once per reducer
        (Q × A × B float64)."""
        if self._land_classes is None:  # two threads may both compute it: the same arrays
            self._land_classes = self._compute_land_classes()
        return self._land_classes

    def _compute_land_classes(self) -> tuple[np.ndarray, np.ndarray]:
        na, nb = self.lsm.shape
        none = (np.zeros(0, dtype=np.int64), np.zeros((0, na, nb)))
        land = self.region_land == 1
        if self.lon_axis == -1 or not land.any() or not self.region_segs[land].all():
            return none
        held = self.region_latsegs[land]  # (land regions, latitude segments)
        patterns: list[bytes] = []
        first, rows = [], []
        for g in range(held.shape[1]):
            if not held[:, g].any():
                continue
            key = held[:, g].tobytes()
            if key not in patterns:
                patterns.append(key)
                first.append(g)
                rows.append(np.zeros(self.nlat, dtype=bool))
            rows[patterns.index(key)][self.lat_seg_start[g]:self.lat_seg_start[g + 1]] = True
        if len(first) > MAX_LAND_CLASSES or len(first) * na * nb * 8 > MAX_LAND_CLASS_BYTES:
            return none
        lat_axis = 1 if self.lon_axis == -2 else 0
        shape = (1, -1) if lat_axis == 1 else (-1, 1)
        weights = np.array([self.lsm * np.where(r, self.area_weights, 0.0).reshape(shape)
                            for r in rows], dtype=np.float64)
        return np.array(first, dtype=np.int64), np.ascontiguousarray(weights)

    def weight_sums(self) -> np.ndarray:
        """Σ W per region."""
        return self._weight_sums
