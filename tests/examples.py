# SPDX-License-Identifier: MIT
"""Every example a user can copy, and where it runs (issue 21, item 2).

Each literal block of the documents below (tests/snippets.py finds them)
is named here by its document and a line it holds, and is either run
as written by the tests named (file::function), or said to be no command
(output to compare with, a record), or a command of the build machine,
with who runs it.  tests/host/test_documented_examples_registry.py fails
when a block is not named here, a name matches no block, or a test named
does not exist.  `python3 -m tests.examples` prints the list.

Who runs a command is who the document says: "as root", `#` or sudo,
root; a `$` prompt or no word about it, an ordinary user (nobody), but
for the shell loop and the Python examples of the guest suite, which run
the venv's Python, root's own (the C program runs as nobody).  A block
that needs the installed package runs in the systemd guest
(tests/system), the others in the guest suite (tests/guest).
"""

from dataclasses import dataclass

from .snippets import HELP, snippet

DOCUMENTS = ["README.rst", "docs/benchmarks.rst", "docs/client.rst",
             "docs/cuse-vmgenid.8.rst", "docs/cuse-vmgenid-hooks.8.rst",
             "docs/design.rst", "docs/hooks.rst",
             "docs/interface.rst", "docs/signals.rst", "docs/vmgenid.1.rst",
             "docs/vmgenid.4.rst",
             HELP]

GUEST = "tests/guest/test_documented_examples.py"
SYSTEM = "tests/system/test_documented_examples.py"
HOST = "tests/host/test_documented_snippets.py"
HOOKS = "tests/system/test_hooks_examples.py::test_the_hooks_rst_examples_" \
    "act_under_systemd"
REGISTRY = "tests/host/test_documented_examples_registry.py"


@dataclass(frozen=True)
class Example:
    document: str
    holding: str        # a line of the block starts with this
    runs: tuple = ()    # "file::test" (or a file) that runs it as written
    why: str = ""       # why nothing runs it in a guest

    def text(self) -> str:
        return snippet(self.document, self.holding)


def runs(document: str, holding: str, *where: str) -> Example:
    return Example(document, holding, runs=where)


def shown(document: str, holding: str, why: str) -> Example:
    """Not a command: output to compare with, or a record."""
    return Example(document, holding, why=why)


def build_machine(document: str, holding: str, why: str) -> Example:
    """A developer's command on the build machine, outside any guest
    (tests/host/test_documented_examples_registry.py checks that its make
    targets and options exist)."""
    return Example(document, holding, why="build machine: " + why)


# README.rst, in its order.
README_INSTALL = runs(
    "README.rst", "apt install ./python3-vmgenid_",
    f"{SYSTEM}::test_readme_install_serves_vmgenid")
README_STATUS = runs(
    "README.rst", "vmgenid status",
    f"{SYSTEM}::test_readme_status_says_generation_0_and_the_source")
README_WAIT = runs(
    "README.rst", "vmgenid wait",
    f"{SYSTEM}::test_wait_ends_at_roots_bump")
README_BUMP = runs(
    "README.rst", "vmgenid bump",
    f"{SYSTEM}::test_wait_ends_at_roots_bump")
README_OPTIONS = runs(
    "README.rst", 'CUSE_VMGENID_OPTS="',
    f"{SYSTEM}::test_readme_options_take_effect_at_the_restart")
README_RESTART = runs(
    "README.rst", "systemctl restart cuse-vmgenid",
    f"{SYSTEM}::test_readme_options_take_effect_at_the_restart")
README_UNIT = runs(
    "README.rst", "[Unit]",
    f"{SYSTEM}::test_readme_unit_order_sees_the_node_and_links_at_start")
README_DEMO = runs(
    "README.rst", "make demo",
    "tests/restore/test_readme_demo.py::"
    "test_readme_make_demo_shows_a_restore_waking_a_watcher")
README_TEST = build_machine(
    "README.rst", "make test", "run by CI itself (.ci/run calls it)")
README_VENV = runs(
    "README.rst", "python3 -m venv /opt/cuse-vmgenid",
    f"{SYSTEM}::test_readme_venv_runs_the_daemon_at_its_defaults")
README_DEB = runs(
    "README.rst", "make deb",
    f"{REGISTRY}::test_build_machine_commands_name_real_targets_and_options",
    f"{SYSTEM}::test_readme_install_serves_vmgenid")   # its apt line
README_C = runs(
    "README.rst", 'int fd = open("/dev/vmgenid"',
    f"{GUEST}::test_c_example_blocks_until_a_change_and_acknowledges")
README_SHELL_LOOP = runs(
    "README.rst", "open_vmgenid() {",
    f"{GUEST}::test_shell_loop_reseeds_at_a_daemon_restart_and_sees_"
    "later_changes",
    f"{HOST}::test_the_shell_loop_handles_every_exit_of_wait_and_ack")
README_PYTHON = runs(
    "README.rst", "for generation in",
    f"{GUEST}::test_python_example_reseeds_on_each_change",
    f"{GUEST}::test_python_example_without_a_daemon_fails_at_once")

# The manual pages and --help.
MAN_WAIT = runs(
    "docs/vmgenid.1.rst", "vmgenid wait",
    f"{SYSTEM}::test_wait_ends_at_roots_bump")
MAN_BUMP = runs(
    "docs/vmgenid.1.rst", "vmgenid bump",
    f"{SYSTEM}::test_wait_ends_at_roots_bump")
MAN_SHELL_LOOP = runs(
    "docs/vmgenid.1.rst", "open_vmgenid() {",
    f"{HOST}::test_the_shell_loop_is_the_same_in_readme_the_man_page_and_"
    "help", *README_SHELL_LOOP.runs)
MAN4_C = runs(
    "docs/vmgenid.4.rst", 'int fd = open("/dev/vmgenid"', *README_C.runs)
HELP_EXIT_CODES = shown(
    HELP, "0  done", "a table of exit codes")
HELP_SHELL_LOOP = runs(HELP, "open_vmgenid() {", *MAN_SHELL_LOOP.runs)

# docs/*.rst
CLIENT_PYTHON = runs(
    "docs/client.rst", "for generation in",
    f"{GUEST}::test_python_example_reseeds_on_each_change")
HOOKS_SKIPPED = shown(
    "docs/hooks.rst", "hook /etc/vmgenid/hooks.d/20-x skipped",
    "the log lines of skipped hooks")
HOOKS_INSTANCE_ID = runs(
    "docs/hooks.rst", "# Each clone of a snapshot must have its own", HOOKS)
HOOKS_RESTART = runs(
    "docs/hooks.rst", "exec systemctl try-restart --no-block", HOOKS)
HOOKS_SSH = runs("docs/hooks.rst", "ssh-keygen -A", HOOKS)
BENCH_RUN = build_machine(
    "docs/benchmarks.rst", "make bench",
    "boots guests for tens of minutes; run by hand, its figures are "
    "docs/benchmarks.rst")
BENCH_COMMAND = shown(
    "docs/benchmarks.rst", ".venv/bin/python bench/run.py --save-json",
    "the command that made the figures under it (bench/run.py writes it)")

EXAMPLES = [value for value in list(globals().values())
            if isinstance(value, Example)]


def listing() -> str:
    """The list, one example a paragraph."""
    out = []
    for name, e in globals().items():
        if isinstance(e, Example):
            where = "\n    ".join(e.runs) or e.why
            out.append(f"{name}: {e.document}: {e.holding!r}\n    {where}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    # `python3 -m tests.examples [NAME]`: the list, or one block (for a
    # guest's shell).
    import sys
    sys.stdout.write(globals()[sys.argv[1]].text() if sys.argv[1:]
                     else listing())
