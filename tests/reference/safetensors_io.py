"""Read and write safetensors files with numpy alone.

Debian ships no python3-safetensors, so the reference tests read the format directly:
  bytes 0..8   header length n, unsigned 64-bit little-endian
  bytes 8..8+n JSON object: name -> {"dtype", "shape", "data_offsets": [begin, end]},
               plus an optional "__metadata__" object of string -> string
  the rest     raw little-endian tensor data; offsets are relative to its start

Every check below exists because a file that fails it would otherwise be read as garbage
numbers (a truncated write, a header from another writer): the reader raises
SafetensorsError naming the file and the problem instead.

BF16 is returned widened to float32 (exact); write BF16 by wrapping float data in Bf16.
"""
import json
import os
import struct

import numpy as np

_DTYPES = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),  # raw bits; widened on read
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"),
}
_NAMES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<i4"): "I32",
          np.dtype("<i8"): "I64", np.dtype("u1"): "U8"}
# The upstream format caps the header at 100 MB; a larger length is a corrupt file.
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(Exception):
    pass


class Bf16:
    """Marks float data to be stored as BF16 (rounded to nearest even, NaN kept quiet)."""

    def __init__(self, values):
        u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
        rounded = ((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        nan = (u & 0x7FFFFFFF) > 0x7F800000
        self.bits = np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


def _bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def load(path):
    """Returns (tensors: dict name -> numpy array, metadata: dict str -> str)."""
    with open(path, "rb") as f:
        raw = f.read()
    size = len(raw)
    if size < 8:
        raise SafetensorsError(f"{path}: {size} bytes, too short for the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > _MAX_HEADER:
        raise SafetensorsError(f"{path}: header length {n} is implausible (corrupt file?)")
    if 8 + n > size:
        raise SafetensorsError(f"{path}: truncated: header says {n} bytes, file has {size - 8}")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")

    data = memoryview(bytearray(raw[8 + n:]))  # a writable copy, so arrays are writable
    spans = []
    tensors = {}
    for name, info in header.items():
        where = f"{path}: tensor '{name}'"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{where}: entry needs exactly dtype, shape, data_offsets")
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise SafetensorsError(f"{where}: unsupported dtype {info['dtype']!r}")
        shape, offsets = info["shape"], info["data_offsets"]
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise SafetensorsError(f"{where}: bad shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            raise SafetensorsError(f"{where}: bad data_offsets {offsets!r}")
        begin, end = offsets
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if end - begin != expected:
            raise SafetensorsError(
                f"{where}: {end - begin} bytes for {info['dtype']}{shape}, expected {expected}")
        if end > len(data):
            raise SafetensorsError(
                f"{where}: truncated: needs data up to byte {end}, file has {len(data)}")
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
        tensors[name] = _bf16_to_f32(array) if info["dtype"] == "BF16" else array
        spans.append((begin, end, name))

    # The format requires the tensors to tile the data section exactly; a gap or an overlap
    # means the offsets were written by something that disagrees with us about the layout.
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise SafetensorsError(
                f"{path}: tensor '{name}' starts at byte {begin}, expected {position} "
                "(gap or overlap in data_offsets)")
        position = end
    if position != len(data):
        raise SafetensorsError(f"{path}: {len(data) - position} bytes after the last tensor")
    return tensors, metadata


def save(path, tensors, metadata=None):
    """Writes name -> numpy array (or Bf16) to path, through a temporary file and a rename."""
    header = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError("metadata must map strings to strings")
        header["__metadata__"] = dict(metadata)
    chunks = []
    offset = 0
    for name, value in tensors.items():
        if isinstance(value, Bf16):
            dtype_name, blob, shape = "BF16", value.bits.astype("<u2").tobytes(), value.bits.shape
        else:
            array = np.asarray(value)
            dtype_name = _NAMES.get(array.dtype.newbyteorder("<"))
            if dtype_name is None:
                raise SafetensorsError(f"tensor '{name}': unsupported dtype {array.dtype}")
            blob = np.ascontiguousarray(array, dtype=_DTYPES[dtype_name]).tobytes()
            shape = array.shape
        header[name] = {"dtype": dtype_name, "shape": list(shape),
                        "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the data section starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in chunks:
            f.write(blob)
    os.replace(tmp, path)
