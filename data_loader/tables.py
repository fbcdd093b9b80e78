"""Read delimited interaction files fast, and say exactly which line is wrong when one is."""

import numpy as np
import pandas as pd

from utils.errors import DataError


def _fits(value, dtype):
    try:
        int(value) if np.issubdtype(dtype, np.integer) else float(value)
        return True
    except ValueError:
        return False


def _describe_bad_line(path, sep, columns, types, skip_header, encoding):
    """Scan the file for the first line that does not fit; return 'path:line: what is wrong'."""
    with open(path, encoding=encoding, errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if skip_header and number == 1:
                continue
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            fields = text.split(sep)
            if len(fields) != len(columns):
                return (
                    f"{path}:{number}: expected {len(columns)} fields separated by {sep!r} "
                    f"({', '.join(columns)}), got {len(fields)}: {text[:80]!r}"
                )
            for name, value in zip(columns, fields):
                if name in types and not _fits(value, types[name]):
                    kind = "an integer" if np.issubdtype(types[name], np.integer) else "a number"
                    return f"{path}:{number}: {name} must be {kind}, got {value!r}"
    return None


def read_table(path, sep, columns, types=None, header=False, encoding="utf-8"):
    """Read `path` into a DataFrame with `columns`; those in `types` ({name: numpy dtype}) are
    parsed as that type (ids as int64: exact, where float64 merges ids above 2^53).

    Any malformed line raises DataError with file:line and what was expected.
    """
    types = types or {}
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=0 if header else None,
            names=list(columns),
            engine="python" if len(sep) > 1 else "c",
            encoding=encoding,
            dtype=dict(types),
            skip_blank_lines=True,
        )
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not {encoding} text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except (ValueError, TypeError, OverflowError, pd.errors.ParserError) as e:
        where = _describe_bad_line(path, sep, columns, types, header, encoding)
        raise DataError(where or f"{path}: cannot be read as {sep!r}-separated {', '.join(columns)}: {e}") from None
    # Columns named '_…' are separators' empty fields (the '::' layout read as ':'); the rest must be there.
    bad = frame[[c for c in columns if not c.startswith("_")]].isna().any(axis=1).to_numpy()
    if bad.any():  # a short line shows up as NaN in its last fields
        where = _describe_bad_line(path, sep, columns, types, header, encoding)
        line = int(np.flatnonzero(bad)[0]) + 1 + int(header)
        raise DataError(where or f"{path}:{line}: empty or missing fields")
    return frame
