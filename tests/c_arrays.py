"""Reading back the C arrays common/deploy/export.py writes, for the tests (not a test module)."""

import re


def parse_c_array(source):
    """The bytes of the single array initialiser in a source written by `export.c_array`."""
    match = re.search(r"\[\]\s*=\s*\{(.*?)\};", source, re.S)
    if match is None:
        raise ValueError("no array initialiser found")
    return bytes(int(token, 16) for token in re.findall(r"0x([0-9a-fA-F]{2})", match.group(1)))


def parse_c_defines(header):
    """{macro: int or float} of the numeric #defines in a header written by `export.c_array`."""
    values = {}
    for macro, value in re.findall(r"^#define\s+(\w+)\s+(\S+)\s*$", header, re.M):
        values[macro] = float(value.rstrip("f")) if value.endswith("f") else int(value)
    return values
