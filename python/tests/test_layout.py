"""The ctypes mirrors of the C structs against the headers: a program compiled against
include/cutune prints every size, field offset and enum value the binding relies on, and each
must equal what ctypes computes. A header change not carried into python/cutune/_lib.py fails
here."""
import ctypes
import os
import shutil
import subprocess

import pytest

from cutune import _lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def probe_program():
    lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <cutune/cutune.h>",
             "int main(void) {"]
    for s in _lib.STRUCTS:
        lines.append(f'printf("{s._c_name_} %zu\\n", sizeof({s._c_name_}));')
        for name, _ in s._fields_:
            lines.append(f'printf("{s._c_name_}.{name} %zu\\n", offsetof({s._c_name_}, {name}));')
    for name in _lib.ENUMS:
        lines.append(f'printf("{name} %ld\\n", (long){name});')
    return "\n".join(lines + ["return 0;", "}"])


def expected():
    out = {}
    for s in _lib.STRUCTS:
        out[s._c_name_] = ctypes.sizeof(s)
        for name, _ in s._fields_:
            out[f"{s._c_name_}.{name}"] = getattr(s, name).offset
    out.update(_lib.ENUMS)
    return out


def test_structs_and_enums_match_the_headers(tmp_path):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "probe.c"
    src.write_text(probe_program())
    exe = tmp_path / "probe"
    include = os.environ.get("CUTUNE_INCLUDE", os.path.join(ROOT, "include"))
    subprocess.run([cc, "-std=c11", "-I", include, str(src), "-o", str(exe)], check=True)
    got = {}
    for line in subprocess.run([str(exe)], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        key, value = line.rsplit(" ", 1)
        got[key] = int(value)
    want = expected()
    wrong = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
    assert not wrong, f"ctypes (python) vs C (headers): {wrong}"
