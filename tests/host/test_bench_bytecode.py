# SPDX-License-Identifier: MIT
"""The benchmark measures the daemon as installed: its modules already
byte-compiled, as py3compile leaves them (bench/run.py)."""

import importlib.util
import os

from bench.run import compile_bytecode


def fresh(source: str) -> bool:
    """The cached bytecode exists and matches the source's mtime and size,
    the check the importer makes before it compiles again."""
    cached = importlib.util.cache_from_source(source)
    if not os.path.exists(cached):
        return False
    with open(cached, "rb") as f:
        header = f.read(16)
    st = os.stat(source)
    return (int.from_bytes(header[8:12], "little") == int(st.st_mtime)
            and int.from_bytes(header[12:16], "little") == st.st_size)


def test_every_module_of_both_packages_is_compiled_after_an_edit(tmp_path):
    sources = [tmp_path / "cuse_vmgenid" / "service" / "daemon.py",
               tmp_path / "client" / "vmgenid" / "__init__.py"]
    for source in sources:
        source.parent.mkdir(parents=True)
        source.write_text("X = 1\n")
    compile_bytecode(str(tmp_path))
    for source in sources:
        source.write_text("X = 22\n")      # edited since: stale bytecode
        os.utime(source, (1, 1))
        assert not fresh(str(source))
    compile_bytecode(str(tmp_path))
    assert all(fresh(str(s)) for s in sources)
