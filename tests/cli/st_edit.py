#!/usr/bin/env python3
"""Writes a damaged copy of a safetensors file, for the CLI error tests.

  st_edit.py IN OUT drop-meta KEY            remove a metadata entry
  st_edit.py IN OUT drop-config-key G.K      remove a key from the metadata's recipe ("config")
  st_edit.py IN OUT nan TENSOR               set the tensor's first float32 value to NaN
  st_edit.py IN OUT shape TENSOR D0,D1,...   change a tensor's shape in the header only
  st_edit.py IN OUT offsets TENSOR BEGIN END change a tensor's data offsets in the header only
"""
import json
import struct
import sys


def main():
    src, dst, op, *args = sys.argv[1:]
    with open(src, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = bytearray(blob[8 + n:])
    if op == "drop-meta":
        del header["__metadata__"][args[0]]
    elif op == "drop-config-key":
        group, key = args[0].split(".")
        config = json.loads(header["__metadata__"]["config"])
        del config[group][key]
        header["__metadata__"]["config"] = json.dumps(config)
    elif op == "nan":
        begin = header[args[0]]["data_offsets"][0]
        data[begin:begin + 4] = struct.pack("<f", float("nan"))
    elif op == "shape":
        header[args[0]]["shape"] = [int(d) for d in args[1].split(",")]
    elif op == "offsets":
        header[args[0]]["data_offsets"] = [int(args[1]), int(args[2])]
    else:
        sys.exit("unknown operation " + op)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(data))


if __name__ == "__main__":
    main()
