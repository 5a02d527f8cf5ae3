"""ONNX external data without the `onnx` package: a model's large initializers moved to a file of their own.

  python3 onnx_external.py IN.onnx OUT.onnx   # OUT.onnx (the graph) + OUT.onnx.data (the weights); IN may be OUT

Used by export_unet_onnx.py --external-data (tools/bench/peers.ts passes the .data file to onnxruntime-web as
`externalData`), and by tests/bench_test.ts on a hand-made model."""
import mmap
import os
import sys


def _varint(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, i


def _uvarint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _fields(buf, start, end):
    """(number, wire type, first byte, first byte of the value, end) of each field of the message in buf[start:end]."""
    i = start
    while i < end:
        at = i
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, j = _varint(buf, i)
        elif wire == 1:
            j = i + 8
        elif wire == 5:
            j = i + 4
        elif wire == 2:
            n, i = _varint(buf, i)
            j = i + n
        else:
            raise ValueError(f"protobuf wire type {wire} (groups) in an ONNX model")
        yield field, wire, at, i, j
        i = j


def _bytes_field(field, payload):
    return _uvarint(field << 3 | 2) + _uvarint(len(payload)) + payload


def split_external_data(src, out, threshold=1024):
    """Writes the ONNX model `src` (bytes-like) as OUT (the graph) + OUT.data (the raw data of every initializer of
    `threshold` bytes or more, 64-byte aligned, as ONNX external data: data_location EXTERNAL and location / offset /
    length entries). A walk over the protobuf's fields that copies each tensor's bytes once, from `src` to the file,
    with no parse of the whole model (which takes seconds and twice the memory for 1.7 GB). OUT appears last (renamed
    into place): a reader that finds it finds its data complete."""
    buf = memoryview(src)
    location = os.path.basename(out) + ".data"
    moved = 0
    with open(out + ".data", "wb") as data:

        def tensor(start, end):
            nonlocal moved
            fields = list(_fields(buf, start, end))
            raw = [f for f in fields if f[0] == 9]
            if not raw or raw[0][4] - raw[0][3] < threshold or any(f[0] in (13, 14) for f in fields):
                return buf[start:end]
            _, _, _, a, b = raw[0]
            data.write(b"\0" * (-data.tell() % 64))
            offset = data.tell()
            data.write(buf[a:b])
            moved += 1
            kept = b"".join(buf[at:j] for f, _, at, _, j in fields if f != 9)
            entries = [("location", location), ("offset", str(offset)), ("length", str(b - a))]
            ext = b"".join(_bytes_field(13, _bytes_field(1, k.encode()) + _bytes_field(2, v.encode()))
                           for k, v in entries)
            return kept + ext + _uvarint(14 << 3 | 0) + _uvarint(1)  # data_location = EXTERNAL

        def message(start, end, rewrite):
            """buf[start:end] with each length-delimited field in `rewrite` (number -> function) rewritten."""
            parts = []
            for f, wire, at, a, b in _fields(buf, start, end):
                if wire == 2 and f in rewrite:
                    parts.append(_bytes_field(f, rewrite[f](a, b)))
                else:
                    parts.append(buf[at:b])
            return b"".join(parts)

        # ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.raw_data = 9.
        model = message(0, len(buf), {7: lambda a, b: message(a, b, {5: tensor})})
        size = data.tell()
    with open(out + ".tmp", "wb") as f:
        f.write(model)
    os.replace(out + ".tmp", out)
    print(f"{moved} initializers ({size} bytes) in {location}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1], "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        split_external_data(m, sys.argv[2])
