"""Raw categorical values -> 64-bit keys, vectorised over Arrow string/binary arrays.

Every categorical raw value becomes a ``uint64`` *key* before it meets a
vocabulary, by one of three rules chosen per field:

* ``int``: the value is a decimal integer (ids of MovieLens, Taobao, Ali-CCP);
  the key is its two's-complement bit pattern, so the raw value is recoverable;
* ``hex``: the value is hexadecimal (Criteo's categorical columns), parsed exactly;
* ``str``: any other string (Avazu, Amazon); the key is the 64-bit FNV-1a hash of
  its bytes (collisions: about ``n**2 / 2**65``, i.e. none expected below ~10^8
  distinct values).

Each function returns ``(keys, present, bad)``: ``present`` is False for missing
(null or empty) values, ``bad`` marks values that break the rule (a non-hex
character, a value longer than :data:`MAX_VALUE_BYTES`). No per-row Python: the
loops run over character positions, each step over every row at once.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEY_KINDS = ("int", "hex", "str")
MAX_VALUE_BYTES = 256
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


def mix64(keys: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-spread ``uint64`` of each key (hash buckets, partitions)."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _as_binary(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if pa.types.is_large_binary(array.type) or pa.types.is_large_string(array.type):
        array = array.cast(pa.binary())
    elif pa.types.is_string(array.type):
        array = array.view(pa.binary())
    return array


def byte_layout(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(data uint8, starts int64, lengths int64, valid bool)`` of a string/binary array."""
    array = _as_binary(array)
    n = len(array)
    validity, offsets, data = array.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32, count=n + 1, offset=array.offset * 4).astype(np.int64)
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    valid = np.ones(n, dtype=bool) if array.null_count == 0 else array.is_valid().to_numpy(zero_copy_only=False)
    return data, offsets[:-1], np.diff(offsets), valid


def _equal_width_block(data: np.ndarray, starts: np.ndarray,
                       lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, chars [R, L])`` when every non-empty value has the same length ``L`` and their bytes are
    contiguous (the common case: Criteo's 8-digit hex values): a view, nothing gathered. Else None."""
    rows = np.flatnonzero(lengths)
    if not rows.size:
        return rows, np.zeros((0, 1), dtype=np.uint8)
    size = int(lengths[rows[0]])
    first = int(starts[rows[0]])
    if int(starts[rows[-1]]) + int(lengths[rows[-1]]) - first != size * rows.size or (lengths[rows] != size).any():
        return None
    return rows, data[first:first + size * rows.size].reshape(-1, size)


def _char_matrix(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                 width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(chars [N, W] uint8, inside [N, W] bool)``: every value's bytes, left-aligned in W columns
    (the longest value unless given), or right-aligned when ``width`` is given."""
    right = width is not None
    width = width if right else (int(lengths.max()) if len(lengths) else 0)
    columns = np.arange(width, dtype=np.int32)
    first = (starts + lengths - width if right else starts).astype(np.int32)
    inside = (columns[None, :] >= (width - lengths)[:, None]) if right else (columns[None, :] < lengths[:, None])
    padded = np.concatenate((np.zeros(width, dtype=np.uint8), data, np.zeros(width, dtype=np.uint8)))  # in bounds
    chars = padded[width + first[:, None] + columns[None, :]]
    chars[~inside] = 0
    return chars, inside


def str_keys(array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FNV-1a 64 of each value's bytes; empty values are missing."""
    data, starts, lengths, valid = byte_layout(array)
    bad = valid & (lengths > MAX_VALUE_BYTES)
    lengths = np.where(valid & ~bad, lengths, 0)
    keys = np.full(len(lengths), FNV_OFFSET, dtype=np.uint64)
    block = _equal_width_block(data, starts, lengths)
    with np.errstate(over="ignore"):
        if block is not None:
            rows, chars = block
            hashed = np.full(len(rows), FNV_OFFSET, dtype=np.uint64)
            for j in range(chars.shape[1]):
                hashed = (hashed ^ chars[:, j].astype(np.uint64)) * FNV_PRIME
            keys[rows] = hashed
        else:
            chars, inside = _char_matrix(data, starts, lengths)
            for j in range(chars.shape[1]):  # one pass per character position, over every row
                keys = np.where(inside[:, j], (keys ^ chars[:, j].astype(np.uint64)) * FNV_PRIME, keys)
    return keys, lengths > 0, bad


def _pack_hex(digits: np.ndarray) -> np.ndarray:
    """``[R, W]`` hex digit values (W even, right-aligned, zeros in front) -> ``uint64 [R]``."""
    packed = np.zeros((len(digits), 8), dtype=np.uint8)  # two digits per byte, big-endian
    packed[:, 8 - digits.shape[1] // 2:] = (digits[:, 0::2] << 4) | (digits[:, 1::2] & 15)
    return packed.view(">u8").reshape(-1).astype(np.uint64)


_LANES = np.uint64(0x0101010101010101)  # one in every byte of a uint64
_HIGH = np.uint64(0x8080808080808080)


def _word_at_least(high: np.ndarray, value: int) -> np.ndarray:
    """Per byte of ``high`` (words with every byte's top bit set): top bit kept where the byte's low 7 bits are
    >= ``value`` (< 0x80), no borrow crossing bytes."""
    return (high - np.uint64(value) * _LANES) & _HIGH


def _hex_words(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values uint64 [R], ok bool [R])`` of 8-digit hex values, each given as its 8 ASCII bytes read as one
    little-endian ``uint64`` (first digit in the lowest byte): SWAR, a few word operations per value instead of
    a lookup per character."""
    high = words | _HIGH
    ascii_ = (words & _HIGH) == 0
    digit = _word_at_least(high, 0x30) & ~_word_at_least(high, 0x3A)
    upper = _word_at_least(high, 0x41) & ~_word_at_least(high, 0x47)
    lower = _word_at_least(high, 0x61) & ~_word_at_least(high, 0x67)
    ok = ascii_ & ((digit | upper | lower) == _HIGH)
    nibbles = (words & np.uint64(0x0F) * _LANES) + np.uint64(9) * ((words >> np.uint64(6)) & _LANES)
    pairs = ((nibbles & np.uint64(0x00FF00FF00FF00FF)) << np.uint64(4)) | ((nibbles >> np.uint64(8))
                                                                          & np.uint64(0x00FF00FF00FF00FF))
    quads = ((pairs & np.uint64(0x0000FFFF0000FFFF)) << np.uint64(8)) | ((pairs >> np.uint64(16))
                                                                         & np.uint64(0x0000FFFF0000FFFF))
    values = ((quads & np.uint64(0xFFFF)) << np.uint64(16)) | ((quads >> np.uint64(32)) & np.uint64(0xFFFF))
    return values, ok


def hex_keys(array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each hexadecimal value (at most 16 digits) as its integer."""
    data, starts, lengths, valid = byte_layout(array)
    bad = valid & (lengths > 16)
    lengths = np.where(valid & ~bad, lengths, 0)
    keys = np.zeros(len(lengths), dtype=np.uint64)
    block = _equal_width_block(data, starts, lengths)
    if block is not None and block[1].shape[1] == 8:  # Criteo's 8-digit values: one word each
        rows, chars = block
        values, ok = _hex_words(np.ascontiguousarray(chars).view("<u8").reshape(-1))
        bad[rows[~ok]] = True
        keys[rows] = values
    elif block is not None:
        rows, chars = block
        digits = _HEX[chars]
        if digits.shape[1] % 2:
            digits = np.concatenate((np.zeros((len(rows), 1), dtype=np.uint8), digits), axis=1)
        bad[rows[digits.max(axis=1, initial=0) == 255]] = True
        keys[rows] = _pack_hex(digits)
    else:
        width = int(lengths.max()) + int(lengths.max()) % 2
        chars, inside = _char_matrix(data, starts, lengths, width)  # right-aligned: the last digit is the lowest
        digits = _HEX[chars]
        bad |= ((digits == 255) & inside).any(axis=1)
        digits[~inside] = 0
        keys = _pack_hex(digits)
    present = (lengths > 0) & ~bad
    return np.where(present, keys, np.uint64(0)), present, bad


def int_keys(array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decimal integers (surrounding blanks allowed); anything else is bad."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if pa.types.is_integer(array.type):
        ints = array.cast(pa.int64())
        present = ints.is_valid().to_numpy(zero_copy_only=False)
        values = ints.fill_null(0).to_numpy(zero_copy_only=False)
        return values.view(np.uint64), present, np.zeros(len(values), dtype=bool)
    text = pc.utf8_trim_whitespace(_as_binary(array).cast(pa.string(), safe=False))
    present = pc.fill_null(pc.greater(pc.utf8_length(text), 0), False).to_numpy(zero_copy_only=False)
    ok = pc.fill_null(pc.match_substring_regex(text, r"^[-+]?[0-9]{1,18}$"), False).to_numpy(zero_copy_only=False)
    bad = present & ~ok
    values = pc.cast(pc.if_else(pa.array(ok), text, "0"), pa.int64()).to_numpy(zero_copy_only=False)
    return values.view(np.uint64), present & ok, bad


KEY_FUNCTIONS = {"int": int_keys, "hex": hex_keys, "str": str_keys}


def dictionary_keys(array, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(keys [D+1], present [D+1], bad [D+1], indices int [N])`` of a dictionary-encoded array: the rule
    applied once per distinct value (entry D stands for a null), and each row's entry."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    keys, present, bad = KEY_FUNCTIONS[kind](array.dictionary)
    missing = len(array.dictionary)
    indices = array.indices.fill_null(missing) if array.null_count else array.indices
    return (np.append(keys, np.uint64(0)), np.append(present, False), np.append(bad, False),
            indices.to_numpy(zero_copy_only=False))


def hex_word_entries(array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`dictionary_keys` of a binary array whose values are all 8 bytes long or empty (Criteo's hex
    columns), or None when some value has another length.

    Each value's 8 bytes, read in place from Arrow's data buffer as one ``uint64`` word (empty -> 0, which no
    8-byte ASCII value can be), are dictionary-encoded by Arrow's integer hash; the hex rule
    (:func:`_hex_words`) then runs once per distinct word, not per value. Two spellings of one number
    (``0000000a``, ``0000000A``) are two entries with one key."""
    array = _as_binary(array)
    n = len(array)
    if array.null_count:
        return None
    _, offsets, data = array.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32, count=n + 1, offset=array.offset * 4)
    lengths = np.diff(offsets)
    if (lengths & ~8).any():
        return None
    first, size = int(offsets[0]), int(offsets[-1] - offsets[0])
    words = np.frombuffer(data, dtype=np.uint8, count=size, offset=first).view("<u8") if size else \
        np.zeros(0, dtype=np.uint64)
    if len(words) != n:  # some values are empty: spread the words to their rows
        spread = np.zeros(n, dtype=np.uint64)
        spread[lengths != 0] = words
        words = spread
    encoded = pc.dictionary_encode(pa.array(words, pa.uint64()))
    distinct = encoded.dictionary.to_numpy()
    keys, ok = _hex_words(distinct)
    present = distinct != 0
    bad = present & ~ok
    present &= ok
    return np.where(present, keys, np.uint64(0)), present, bad, encoded.indices.to_numpy()


def keys_of(array, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keys uint64 [N], present bool [N], bad bool [N])`` of ``array`` under rule ``kind``."""
    if pa.types.is_dictionary(array.type):
        keys, present, bad, indices = dictionary_keys(array, kind)
        return keys[indices], present[indices], bad[indices]
    return KEY_FUNCTIONS[kind](array)


def render_keys(keys: np.ndarray, kind: str) -> list[str]:
    """The raw text of ``int``/``hex`` keys (``str`` keys are one-way hashes)."""
    if kind == "int":
        return [str(k) for k in keys.view(np.int64).tolist()]
    if kind == "hex":
        return [format(k, "08x") for k in keys.tolist()]
    raise ValueError("str keys are hashes; their raw values are kept separately")
