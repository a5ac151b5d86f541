"""The Flask service's JSON bytes, written by orjson where that is exact.

Flask's provider writes `json.dumps(obj, sort_keys=True, ensure_ascii=True,
separators=(",", ":"))` and a newline. For documents made of dicts with str
keys, lists, str, int, bool and None, orjson with sorted keys writes the same
bytes whenever its output holds no byte above 0x7E. orjson writes non-ASCII
text and DEL as they are, where Flask writes `\\uXXXX`: those documents, and
ints past 64 bits, lone surrogates or any other type, are left to the app's
own provider. Floats must not come here: orjson writes `1e16` and `null` where
Python writes `1e+16` and `NaN`. tests/api/test_wire_json.py holds the two
byte-equal over generated documents.
"""

from __future__ import annotations

from typing import Any

import orjson

# Anything but the plain types raises in orjson: the caller's provider writes it.
_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_APPEND_NEWLINE
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def fast_json(obj: Any) -> bytes | None:
    """Flask's bytes for a float-free document of the plain JSON types, from
    orjson; None when orjson cannot write exactly those."""
    try:
        out = orjson.dumps(obj, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return None
    # Python escapes DEL (0x7F) too: it is ASCII but not printable.
    return out if out.isascii() and b"\x7f" not in out else None
