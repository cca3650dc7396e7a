"""Reads an eenn model file (docs/format.md, version 1) into Python: the architecture text, the metadata and every
tensor as a float32 numpy array, checked like the C loader (magic, version, end marker, CRC-32). Tensor names equal
PyTorch state_dict keys of tests/torch_models.py, so `model.load_state_dict(torch_state(path))` moves eenn's weights
into PyTorch (and from there to ONNX).

    from eenn_file import read_eenn
    arch, meta, tensors = read_eenn("model.eenn")
"""
import struct
import zlib

import numpy as np


def read_eenn(path):
    data = open(path, "rb").read()
    if data[:8] != b"EENNMODL":
        raise ValueError(f"{path}: not an eenn model file")
    if data[-8:] != b"EENN_END":
        raise ValueError(f"{path}: truncated (no end marker)")
    (crc,) = struct.unpack_from("<I", data, len(data) - 12)
    if zlib.crc32(data[:-12]) & 0xFFFFFFFF != crc:
        raise ValueError(f"{path}: checksum mismatch (corrupted)")
    pos = 8
    (version,) = struct.unpack_from("<I", data, pos)
    pos += 4
    if version != 1:
        raise ValueError(f"{path}: version {version}, this reader knows 1")

    def string():
        nonlocal pos
        (n,) = struct.unpack_from("<I", data, pos)
        s = data[pos + 4:pos + 4 + n].decode()
        pos += 4 + n
        return s

    arch = string()
    (m,) = struct.unpack_from("<I", data, pos)
    pos += 4
    meta = {}
    for _ in range(m):
        k = string()
        meta[k] = string()
    (t,) = struct.unpack_from("<I", data, pos)
    pos += 4
    directory = []
    for _ in range(t):
        name = string()
        (ndim,) = struct.unpack_from("<I", data, pos)
        dims = struct.unpack_from(f"<{ndim}I", data, pos + 4)
        off, count = struct.unpack_from("<QQ", data, pos + 4 + 4 * ndim)
        pos += 4 + 4 * ndim + 16
        directory.append((name, dims, off, count))
    base = (pos + 63) // 64 * 64
    tensors = {}
    for name, dims, off, count in directory:
        a = np.frombuffer(data, dtype="<f4", count=count, offset=base + off)
        tensors[name] = a.reshape(dims).copy() if dims else a.copy()
    return arch, meta, tensors


def torch_state(path, keep_train=False):
    """The tensors as a torch state_dict (training-state tensors `train.*` left out)."""
    import torch
    _, _, tensors = read_eenn(path)
    return {k: torch.from_numpy(v) for k, v in tensors.items() if keep_train or not k.startswith("train.")}
