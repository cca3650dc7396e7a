"""Writes small SVHN files in the published format (MATLAB v5 MAT-files, as train_32x32.mat and test_32x32.mat):
X uint8 32x32x3xN in MATLAB's column-major order, y double Nx1 with labels 1..10 (10 is the digit 0).

The writer follows the MAT-file format by hand (no MATLAB library), so that eenn's loader, which reads through
libmatio, is checked against an independent writer. Pixel (row r, column c, channel k) of image i is
(7 * r + 3 * c + 50 * k + 11 * i) % 256.

    python3 tests/make_svhn.py tests/fixtures/svhn
"""
import os
import struct
import sys

MI_INT8, MI_UINT8, MI_INT32, MI_UINT32, MI_DOUBLE, MI_MATRIX = 1, 2, 5, 6, 9, 14
MX_DOUBLE, MX_UINT8 = 6, 9


def element(kind, payload):
    pad = (-len(payload)) % 8
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * pad


def matrix(name, mx_class, mi_type, dims, data):
    body = element(MI_UINT32, struct.pack("<II", mx_class, 0))
    body += element(MI_INT32, struct.pack("<%di" % len(dims), *dims))
    body += element(MI_INT8, name.encode())
    body += element(mi_type, data)
    return struct.pack("<II", MI_MATRIX, len(body)) + body


def pixel(r, c, k, i):
    return (7 * r + 3 * c + 50 * k + 11 * i) % 256


def write(path, labels):
    n = len(labels)
    # column-major: the row index runs fastest, then the column, the channel, the image
    x = bytes(pixel(r, c, k, i) for i in range(n) for k in range(3) for c in range(32) for r in range(32))
    head = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, written by eenn's test generator".ljust(116, b" ")
    head += b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    with open(path, "wb") as f:
        f.write(head)
        f.write(matrix("X", MX_UINT8, MI_UINT8, [32, 32, 3, n], x))
        f.write(matrix("y", MX_DOUBLE, MI_DOUBLE, [n, 1], struct.pack("<%dd" % n, *[float(v) for v in labels])))


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/svhn"
    os.makedirs(d, exist_ok=True)
    write(os.path.join(d, "train_32x32.mat"), [1, 10, 5, 3, 10])
    write(os.path.join(d, "test_32x32.mat"), [2, 7, 10])


if __name__ == "__main__":
    main()
