# SPDX-License-Identifier: MIT
"""Every source file says its license: the SPDX line tools/add-spdx adds.

The rules (which files, which comment, which line) live in tools/add-spdx;
here they are run on this checkout, and on a scratch repository whose
expected results are written out.
"""

import os
import stat
import subprocess

from tests.harness.cache import REPO_ROOT

ADD_SPDX = str(REPO_ROOT / "tools" / "add-spdx")
MIT = "SPDX-License-Identifier: MIT"


def test_every_tracked_source_file_carries_an_spdx_line():
    run = subprocess.run([ADD_SPDX, "--check"], capture_output=True,
                         text=True)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", ""), \
        "run tools/add-spdx:\n" + run.stdout + run.stderr


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True,
                   capture_output=True)


def test_add_spdx_puts_the_line_first_or_after_the_shebang_and_keeps_other_licenses(  # noqa: E501
        tmp_path):
    files = {
        "a.c": "int x;\n",
        "a.h": "/* SPDX-License-Identifier: GPL-2.0+ WITH Linux-syscall-note */\n#define A 1\n",  # noqa: E501
        "old.c": "// SPDX-License-Identifier: GPL-2.0+\nint y;\n",
        "m.py": '"""Doc."""\n',
        "s.sh": "#!/bin/sh\necho hi\n",
        "tool": "#!/usr/bin/env python3\nprint()\n",
        "sub/Makefile": "all:\n",
        "packaging/acpid/rule": "event=x\n",
        "done.py": f"# {MIT}\nx = 1\n",
        "empty.py": "",
        "README.rst": "Title\n=====\n",
        "data.json": "{}\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "tool").chmod(0o755)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")

    run = subprocess.run([ADD_SPDX, str(tmp_path)], capture_output=True,
                         text=True, check=True)
    changed = sorted(line.split(": ", 1)[1]
                     for line in run.stdout.splitlines())
    assert changed == ["a.c", "m.py", "packaging/acpid/rule", "s.sh",
                       "sub/Makefile", "tool"]

    def text(name):
        return (tmp_path / name).read_text()
    assert text("a.c") == f"// {MIT}\nint x;\n"
    assert text("m.py") == f'# {MIT}\n"""Doc."""\n'
    assert text("s.sh") == f"#!/bin/sh\n# {MIT}\necho hi\n"
    assert text("tool") == f"#!/usr/bin/env python3\n# {MIT}\nprint()\n"
    assert text("sub/Makefile") == f"# {MIT}\nall:\n"
    assert text("packaging/acpid/rule") == f"# {MIT}\nevent=x\n"
    for name in ("a.h", "old.c", "done.py", "empty.py", "README.rst",
                 "data.json"):
        assert text(name) == files[name], name
    assert stat.S_IMODE(os.stat(tmp_path / "tool").st_mode) == 0o755

    again = subprocess.run([ADD_SPDX, "--check", str(tmp_path)],
                           capture_output=True, text=True)
    assert (again.returncode, again.stdout) == (0, "")


# Each license and exception an SPDX line names, and where its text is.
LICENSE_TEXTS = {"MIT": "LICENSE",
                 "GPL-2.0+": "LICENSES/GPL-2.0-or-later.txt",
                 "Linux-syscall-note": "LICENSES/Linux-syscall-note.txt"}


def test_every_license_named_ships_its_text():
    """The tree's SPDX lines name only licenses whose text it carries
    (README.rst says which files are under which)."""
    tracked = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z"],
                             capture_output=True, check=True).stdout
    named = set()
    for name in tracked.decode().split("\0"):
        path = REPO_ROOT / name
        if not name or name.startswith("tests/host/test_license") \
                or not path.is_file():
            continue
        with open(path, errors="replace") as f:
            head = f.read(400)
        for line in head.splitlines()[:3]:
            if "SPDX-License-Identifier:" in line:
                spec = line.split("SPDX-License-Identifier:", 1)[1]
                spec = spec.replace("*/", "").replace("-->", "").strip()
                named.update(part for part in spec.split()
                             if part not in ("WITH", "AND", "OR"))
    assert named == set(LICENSE_TEXTS), named
    for text in LICENSE_TEXTS.values():
        assert (REPO_ROOT / text).stat().st_size > 500 or \
            text.endswith("note.txt")
    readme = (REPO_ROOT / "README.rst").read_text()
    for text in LICENSE_TEXTS.values():
        assert text in readme, text
