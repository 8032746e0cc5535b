"""C source text for constants: arrays, float literals, comments, and packed weight bytes.

Weights narrower than 8 bits are packed like CMSIS-NN's s4 weights: value i of the flattened
tensor lives in byte i * bits // 8 at bit (i * bits) % 8 from the least significant bit, as two's
complement of the storage width (4 bits for 3- and 4-bit weights, 2 bits for 2-bit weights,
8 bits otherwise).

Example:
    >>> import numpy as np
    >>> pack_values(np.array([1, -1, 7, -7], np.int8), 4).tolist()   # 0xf1, 0x97
    [241, 151]
    >>> c_float(0.1)
    '0.100000001f'
    >>> c_double(0.1)
    '0.10000000000000001'
"""

from __future__ import annotations

import numpy as np

VALUES_PER_LINE = 16
STORAGE_BITS = {2: 2, 3: 4, 4: 4, 5: 8, 6: 8, 7: 8, 8: 8}


def storage_bits(bits: int) -> int:
    """Bits each stored weight takes in C for a tensor of `bits`-bit weights."""
    return STORAGE_BITS[int(bits)]


def pack_values(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack int8 values (each within the two's-complement range of `bits`) into uint8 bytes.

    Args:
        values: int8 array, flattened in C order.
        bits: storage width: 8, 4 or 2.

    Returns:
        uint8 array of ceil(len * bits / 8) bytes (a partial last byte is zero-filled).
    """
    flat = np.ravel(values).astype(np.int16)
    if bits == 8:
        return flat.astype(np.int8).view(np.uint8)
    per_byte = 8 // bits
    padded = np.zeros(-(-flat.size // per_byte) * per_byte, np.uint16)
    padded[: flat.size] = flat & ((1 << bits) - 1)  # two's complement of `bits` bits
    lanes = padded.reshape(-1, per_byte) << (np.arange(per_byte, dtype=np.uint16) * bits)
    return lanes.sum(axis=1).astype(np.uint8)


def packed_bytes(n_values: int, bits: int) -> int:
    """Bytes taken by `n_values` values packed at storage width `bits`."""
    return -(-n_values * bits // 8)


def c_float(value: float) -> str:
    """A float literal that parses to exactly float32(value) (9 significant digits round-trip)."""
    v = float(np.float32(value))
    if not np.isfinite(v):
        raise ValueError(f"cannot write {v} as a C float")
    text = f"{v:.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def c_double(value: float) -> str:
    """A double literal that parses to exactly `value` (17 significant digits round-trip)."""
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"cannot write {v} as a C double")
    text = f"{v:.17g}"
    return text if "e" in text or "." in text else text + ".0"


def c_int(value: int) -> str:
    """An int literal; INT32_MIN is written as an expression (its literal would not fit)."""
    value = int(value)
    return "(-2147483647 - 1)" if value == -(2**31) else str(value)


def c_array(ctype: str, name: str, values, *, hexadecimal: bool = False, comment: str = "") -> str:
    """A `static const` C array definition of `values` (any iterable of numbers or literals)."""
    items = _items(values, hexadecimal)
    lines = [
        "    " + ", ".join(items[i : i + VALUES_PER_LINE]) + ","
        for i in range(0, len(items), VALUES_PER_LINE)
    ]
    head = f"/* {c_comment(comment)} */\n" if comment else ""
    body = "\n".join(lines) if lines else "    0,"
    return f"{head}static const {ctype} {name}[{max(len(items), 1)}] = {{\n{body}\n}};\n"


def _items(values, hexadecimal: bool) -> list[str]:
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        flat = array.ravel().tolist()
        return [f"0x{v:02x}" for v in flat] if hexadecimal else [c_int(v) for v in flat]
    return [_literal(v, hexadecimal) for v in np.ravel(np.asarray(values, dtype=object))]


def _literal(value, hexadecimal: bool) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (float, np.floating)):
        return c_float(value)
    if hexadecimal:
        return f"0x{int(value):02x}"
    return c_int(value)


def c_comment(text: str) -> str:
    """`text` made safe inside a /* */ comment (one line, no comment terminator)."""
    return " ".join(str(text).split()).replace("*/", "* /")


def c_string(text: str) -> str:
    """A C string literal (quotes, backslashes and non-printable characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode())
    return '"' + "".join(out) + '"'
