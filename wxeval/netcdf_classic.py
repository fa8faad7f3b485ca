"""A writer of classic netCDF (64-bit offset, "CDF-2") for large fixed-size arrays.

The file :func:`wxeval.results.write_netcdf` writes through xarray and scipy holds every
variable twice more in memory (scipy's big-endian copy, then its bytes), which for the error
maps (~100 MB at 1.5°) costs more than the maps themselves. Here each variable is converted to
big-endian into one reused buffer and written from it.

Format (NetCDF Classic Format Specification, version 2): ``CDF\\x02``, the number of records
(0: no record dimension), the dimensions, the global attributes, the variables (name, dimension
ids, attributes, type, size in bytes padded to 4, 8-byte offset of the data), then each
variable's data, big-endian, padded to 4 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

_DIMENSION, _VARIABLE, _ATTRIBUTE = 10, 11, 12
#: Largest size in bytes of any variable but the last: the format states sizes in 32 bits.
VARIABLE_LIMIT = 2**32 - 4
_TYPES = {np.dtype("S1"): 2, np.dtype(">i4"): 4, np.dtype(">f4"): 5, np.dtype(">f8"): 6}


@dataclass
class Variable:
    """One variable: ``dims`` (names), ``values`` (any array of that shape), written as
    ``dtype`` (``>f4``, ``>f8`` or ``>i4``), with attributes."""

    dims: Sequence[str]
    values: np.ndarray
    dtype: str
    attrs: Mapping = field(default_factory=dict)


def write(path: str, dims: Mapping[str, int], variables: Mapping[str, Variable],
          attrs: Mapping) -> None:
    """Write the file (an existing one is replaced)."""
    dim_ids = {name: i for i, name in enumerate(dims)}
    head = [b"CDF\x02", struct.pack(">i", 0)]
    head.append(_list(_DIMENSION, [_name(n) + struct.pack(">i", int(size))
                                   for n, size in dims.items()]))
    head.append(_attributes(attrs))
    # The header's size does not depend on the offsets (8 bytes each): lay it out once with
    # zeros, then with the offsets.
    sizes = {}
    for name, var in variables.items():
        shape = tuple(dims[d] for d in var.dims)
        if tuple(np.shape(var.values)) != shape:
            raise ValueError(f"{name}: shape {np.shape(var.values)} is not {shape}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(var.dtype).itemsize
        sizes[name] = (nbytes, nbytes + (-nbytes) % 4)
    for name in list(variables)[:-1]:  # only the last may exceed the 32-bit size
        if sizes[name][0] > VARIABLE_LIMIT:
            raise ValueError(f"{path}: variable {name!r} takes {sizes[name][0] / 2**30:.1f} GiB; "
                             "classic netCDF allows more than 4 GiB for its last variable only")

    def var_list(offsets):
        entries = []
        for name, var in variables.items():
            vsize = min(sizes[name][1], 2**32 - 1)
            entries.append(
                _name(name) + struct.pack(">i", len(var.dims))
                + b"".join(struct.pack(">i", dim_ids[d]) for d in var.dims)
                + _attributes(var.attrs)
                + struct.pack(">iIq", _TYPES[np.dtype(var.dtype)], vsize, offsets[name]))
        return _list(_VARIABLE, entries)

    start = len(b"".join(head)) + len(var_list(dict.fromkeys(variables, 0)))
    offsets, pos = {}, start
    for name in variables:
        offsets[name] = pos
        pos += sizes[name][1]
    buffers: dict[tuple, np.ndarray] = {}
    with open(path, "wb") as fh:
        fh.write(b"".join(head) + var_list(offsets))
        for name, var in variables.items():
            values = np.asarray(var.values)
            key = (values.shape, var.dtype)
            if key not in buffers:
                buffers[key] = np.empty(values.shape, var.dtype)
            out = buffers[key]
            np.copyto(out, values, casting="unsafe")
            fh.write(memoryview(out.reshape(-1).view(np.uint8)))
            fh.write(b"\0" * (sizes[name][1] - sizes[name][0]))


def _name(name: str) -> bytes:
    raw = name.encode("utf-8")
    return struct.pack(">i", len(raw)) + raw + b"\0" * ((-len(raw)) % 4)


def _list(tag: int, entries: list[bytes]) -> bytes:
    if not entries:
        return b"\0" * 8  # ABSENT
    return struct.pack(">ii", tag, len(entries)) + b"".join(entries)


def _attributes(attrs: Mapping) -> bytes:
    return _list(_ATTRIBUTE, [_name(k) + _value(v) for k, v in attrs.items()])


def _value(v) -> bytes:
    """One attribute value: text (str, bytes) as characters, integers as 32-bit ints, floats
    as doubles (float32 as floats), as xarray stores them in classic netCDF."""
    if isinstance(v, str):
        v = v.encode("utf-8")
    if isinstance(v, bytes):
        data, kind, n = v, 2, len(v)
    elif isinstance(v, bool | int | np.integer):
        data, kind, n = np.asarray(v, ">i4").tobytes(), 4, 1
    elif isinstance(v, np.float32):
        data, kind, n = np.asarray(v, ">f4").tobytes(), 5, 1
    elif isinstance(v, float | np.floating):
        data, kind, n = np.asarray(v, ">f8").tobytes(), 6, 1
    else:
        raise TypeError(f"attribute value {v!r}: not text or a number")
    return struct.pack(">ii", kind, n) + data + b"\0" * ((-len(data)) % 4)
