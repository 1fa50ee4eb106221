# SPDX-License-Identifier: MIT
"""The ioctl numbers the Python client sends (ioctls.py, pure Python so an
application needs no compiled module) against the ones native/shim/
transport.c answers, from the uapi header itself
(native/include/linux/vmgenid.h): a compiled program prints them."""

import os
import subprocess

from vmgenid import ioctls

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NAMES = ("GET_OUTDATED_WATCHERS", "WAIT_WATCHERS", "FORCE_GEN_UPDATE",
         "NOTIFY", "FORCE_GEN_UPDATE_MIN")
PRINTER = ("#include <stdio.h>\n#include <linux/vmgenid.h>\n"
           "int main(void)\n{\n"
           + "".join(f'\tprintf("%lu\\n", (unsigned long)VMGENID_{name});\n'
                     for name in NAMES)
           + "\treturn 0;\n}\n")


def test_the_client_sends_the_headers_numbers(tmp_path):
    source, program = tmp_path / "numbers.c", tmp_path / "numbers"
    source.write_text(PRINTER)
    subprocess.run(["cc", "-Wall", "-Werror", "-I",
                    os.path.join(REPO, "native", "include"), "-o",
                    str(program), str(source)], check=True)
    printed = subprocess.run([str(program)], check=True, capture_output=True,
                             text=True).stdout.split()
    assert [int(n) for n in printed] == [getattr(ioctls, name)
                                         for name in NAMES]
