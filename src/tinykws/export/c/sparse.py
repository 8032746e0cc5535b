"""Weight storage for the C kernels: dense (packed at 8, 4 or 2 bits) or sparse (bitmask).

Magnitude pruning leaves many weights at exactly zero, but a dense array (and a .tflite file)
stores them all. The sparse encoding stores, per layer,
- a mask with one bit per weight of the (C_out, K) weight matrix (row-major, bit j of byte
  j // 8 from the least significant bit), set for non-zero weights;
- the non-zero values in row order, packed at the storage width like dense weights,
so a layer of density d costs K * C_out / 8 + d * K * C_out * bits / 8 bytes instead of
K * C_out * bits / 8: it pays below a density of 1 - 1 / bits (87.5 % for int8, 75 % for int4,
50 % for int2). No per-row index is needed: the kernels (CONV_2D and FULLY_CONNECTED) visit the
rows in order and keep a running count of the set bits. With mode "auto" a layer is stored
sparse only when that is smaller.

Example:
    >>> import numpy as np
    >>> rows = np.zeros((4, 64), np.int8); rows[:, ::8] = 3          # 87.5 % zeros
    >>> dense, sparse = encode_dense(rows, 8), encode_sparse(rows, 8)
    >>> dense.nbytes, sparse.nbytes                                   # mask 32 + values 32
    (256, 64)
    >>> choose_encoding(rows, 8, "auto", sparse_ok=True).kind
    'sparse'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinykws.config import check_choice
from tinykws.export.c.carray import pack_values, storage_bits

SPARSE_MODES = ("auto", "off", "always")


@dataclass(frozen=True)
class EncodedWeights:
    """One layer's weights as the C kernels read them (see `tk_weights` in kernels.h).

    Attributes:
        kind: "dense" or "sparse".
        bits: storage width, 8, 4 or 2.
        values: uint8 bytes: every weight (dense) or the non-zero ones (sparse), packed.
        mask: uint8 bitmask (sparse only).
        dense_bytes: bytes the dense encoding would take.
    """

    kind: str
    bits: int
    values: np.ndarray
    mask: np.ndarray | None = None
    dense_bytes: int = 0

    @property
    def nbytes(self) -> int:
        """Flash bytes of this encoding (values, and the mask when sparse)."""
        return int(self.values.size + (0 if self.mask is None else self.mask.size))

    @property
    def saved_bytes(self) -> int:
        """Bytes saved against the dense encoding (0 for dense)."""
        return self.dense_bytes - self.nbytes


def encode_dense(data: np.ndarray, bits: int) -> EncodedWeights:
    """Dense weights of a tensor with `bits`-bit values, flattened in C order and packed."""
    width = storage_bits(bits)
    values = pack_values(data, width)
    return EncodedWeights("dense", width, values, dense_bytes=int(values.size))


def encode_sparse(rows: np.ndarray, bits: int) -> EncodedWeights:
    """Sparse weights of a (C_out, K) matrix of `bits`-bit values (see the module docstring)."""
    rows = np.asarray(rows).reshape(rows.shape[0], -1)
    width = storage_bits(bits)
    nonzero = rows != 0
    mask = np.packbits(nonzero.ravel(), bitorder="little")
    values = pack_values(rows[nonzero], width)
    dense = pack_values(rows, width).size
    return EncodedWeights("sparse", width, values, mask, int(dense))


def choose_encoding(rows: np.ndarray, bits: int, mode: str, sparse_ok: bool) -> EncodedWeights:
    """The encoding of one layer's weights.

    Args:
        rows: the weights as the kernel reads them, (C_out, K) for sparse-capable layers (any
            C-ordered array for the others).
        bits: weight bit width, 2..8.
        mode: "auto" (sparse when smaller), "off" (always dense) or "always" (sparse whenever
            the layer supports it, even when larger: for testing the kernels).
        sparse_ok: whether the layer's kernel reads sparse weights.
    """
    check_choice("sparse", mode, SPARSE_MODES)
    dense = encode_dense(rows, bits)
    if not sparse_ok or mode == "off":
        return dense
    sparse = encode_sparse(rows, bits)
    return sparse if mode == "always" or sparse.nbytes < dense.nbytes else dense
