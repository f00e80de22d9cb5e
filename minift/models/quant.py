"""GGUF block quantization, written out: how 4-bit and 8-bit weights are stored and turned back into floats.

Weights are cut into blocks of 32 consecutive values (along a row); each block stores a float16 scale
(and for Q4_1 a float16 minimum) plus one small integer per value:

    Q8_0  (34 bytes / 32 values = 8.5 bits):   d: f16, q: 32 × int8            x = d · q
    Q4_0  (18 bytes / 32 values = 4.5 bits):   d: f16, q: 16 bytes of nibbles  x = d · (q − 8)
    Q4_1  (20 bytes / 32 values = 5 bits):     d: f16, m: f16, 16 bytes        x = d · q + m

Nibble order (Q4_0, Q4_1): byte j of a block holds value j in its low 4 bits and value j + 16 in its
high 4 bits. ``quantize_*`` do the reverse, so the lessons can measure the error of each format.
"""
from __future__ import annotations

import numpy as np  # host-side: file bytes decoded at load time, before backend.asarray moves the weights

BLOCK = 32
BYTES_PER_BLOCK = {"Q8_0": 34, "Q4_0": 18, "Q4_1": 20}


def _blocks(raw, kind):
    raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    size = BYTES_PER_BLOCK[kind]
    if raw.size % size:
        raise ValueError(f"{kind} data of {raw.size} bytes is not a whole number of {size}-byte blocks")
    return raw.reshape(-1, size)  # (n_blocks, bytes per block)


def _nibbles(qs):
    """(n, 16) packed bytes → (n, 32) values 0..15: low nibbles are values 0..15, high nibbles 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)


def dequantize_q8_0(raw):
    b = _blocks(raw, "Q8_0")
    d = b[:, :2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    q = b[:, 2:].copy().view(np.int8).astype(np.float32)  # (n, 32)
    return (d * q).reshape(-1)


def dequantize_q4_0(raw):
    b = _blocks(raw, "Q4_0")
    d = b[:, :2].copy().view(np.float16).astype(np.float32)
    return (d * (_nibbles(b[:, 2:]) - 8.0)).reshape(-1)


def dequantize_q4_1(raw):
    b = _blocks(raw, "Q4_1")  # (n_blocks, 20): bytes 0-1 d, 2-3 m, 4-19 the packed nibbles
    # TASK quant.dequantize_q4_1: turn Q4_1 blocks back into float32 weights
    # BEGIN SOLUTION
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    m = b[:, 2:4].copy().view(np.float16).astype(np.float32)  # (n, 1)
    return (d * _nibbles(b[:, 4:]) + m).reshape(-1)
    # END SOLUTION


DEQUANTIZE = {"Q8_0": dequantize_q8_0, "Q4_0": dequantize_q4_0, "Q4_1": dequantize_q4_1}


def dequantize(raw, kind, shape):
    """Raw GGUF tensor bytes of type ``kind`` → float32 array of ``shape`` (NumPy order, rows last-axis-major)."""
    if kind == "F32":
        return np.ascontiguousarray(raw).view(np.float32).reshape(shape)
    if kind == "F16":
        return np.ascontiguousarray(raw).view(np.float16).astype(np.float32).reshape(shape)
    if kind not in DEQUANTIZE:
        raise ValueError(f"GGUF tensor type {kind} is not supported (minift reads F32, F16, Q8_0, Q4_0, Q4_1)")
    return DEQUANTIZE[kind](raw).reshape(shape)


def quantize_q8_0(x):
    """Blocks of 32: d = max|x|/127, q = round(x/d). Returns the raw bytes, as GGUF stores them."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, BLOCK)
    d = np.abs(x).max(axis=1, keepdims=True) / 127.0
    q = np.round(np.divide(x, d, out=np.zeros_like(x), where=d > 0)).astype(np.int8)
    return np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1).reshape(-1)


def quantize_q4_1(x):
    """Blocks of 32: m = min, d = (max − min)/15, q = round((x − m)/d) in 0..15, packed two per byte."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, BLOCK)
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    d = (hi - lo) / 15.0
    q = np.clip(np.round(np.divide(x - lo, d, out=np.zeros_like(x), where=d > 0)), 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    return np.concatenate([d.astype(np.float16).view(np.uint8), lo.astype(np.float16).view(np.uint8), packed], axis=1).reshape(-1)
