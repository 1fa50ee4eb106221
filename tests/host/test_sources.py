# SPDX-License-Identifier: MIT
"""The ladder (sources.open_source): the first tier that works, one log
line per tier skipped and why, and `none` said loudly when none works; and
every tier one kind of part (sources/base.py), which the daemon never asks
which it is."""

import ast
import inspect
import logging
import os
import subprocess
import sys

import pytest

from cuse_vmgenid import sources
from cuse_vmgenid.service import daemon
from cuse_vmgenid.sources import UNSEEN, SourceUnavailable

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def opener(result):
    def open_tier(poll_interval_ms):
        if isinstance(result, Exception):
            raise result
        return result
    return open_tier


@pytest.fixture
def tiers(monkeypatch):
    def install(**results):
        monkeypatch.setattr(sources, "DRIVERS", {
            name.replace("_", "-"): opener(result)
            for name, result in results.items()})
    return install


def test_auto_takes_the_first_tier_that_works(tiers, caplog):
    caplog.set_level(logging.INFO)
    tiers(fwcfg=SourceUnavailable("lockdown: integrity (...)"),
          acpi=SourceUnavailable("ADDR form not read: ..."),
          vmclock=SourceUnavailable("no /dev/vmclock0"),
          kernel_log="the kernel-log source")
    assert sources.open_source("auto", 200) == "the kernel-log source"
    assert [r.getMessage() for r in caplog.records] == [
        "source tier fwcfg skipped: lockdown: integrity (...)",
        "source tier acpi skipped: ADDR form not read: ...",
        "source tier vmclock skipped: no /dev/vmclock0",
        "source tier kernel-log (--source auto)"]
    # Skipping a tier the machine lacks is normal: no warning.
    assert {r.levelno for r in caplog.records} == {logging.INFO}


def test_a_tier_asked_for_is_the_only_one_tried(tiers):
    tiers(fwcfg="fw_cfg's", acpi="acpi's", vmclock="vmclock's",
          kernel_log=SourceUnavailable("bound to no device"))
    assert sources.open_source("acpi", 200) == "acpi's"
    source = sources.open_source("kernel-log", 200)
    assert isinstance(source, sources.NoSource)
    assert source.unseen == (f"{UNSEEN}: kernel-log: bound to no "
                             "device")


def test_none_when_no_tier_works_says_so_at_error_level(tiers, caplog):
    tiers(fwcfg=SourceUnavailable("no qemu_fw_cfg"),
          acpi=SourceUnavailable("no /dev/mem"),
          vmclock=SourceUnavailable("no /dev/vmclock0"),
          kernel_log=SourceUnavailable("bound to no device"))
    source = sources.open_source("auto", 200)
    assert source.name == "none"
    assert source.unseen == (
        "HARDWARE CHANGES WILL NOT BE SEEN (snapshot restores, clones): "
        "fwcfg: no qemu_fw_cfg; acpi: no /dev/mem; vmclock: no "
        "/dev/vmclock0; kernel-log: bound to no device")
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert source.unseen in error.getMessage()
    assert source.check() == sources.Change(None)   # every hint bumps


def test_every_tier_is_a_choice():
    assert sources.SOURCE_CHOICES == ("auto", "fwcfg", "acpi", "vmclock",
                                      "kernel-log", "none")
    assert tuple(sources.DRIVERS) == sources.TIERS


NO_THREAD = r"""
import os, resource, sys
from cuse_vmgenid.sources import SourceUnavailable
from cuse_vmgenid.sources.guid import GuidSource, MappedGuid
from cuse_vmgenid.sources.memory import GuidMapping

mapping = GuidMapping(0x1000, sys.argv[1])
# No thread can start: nobody, with no process to spare.
resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
os.setgid(65534)
os.setuid(65534)
try:
    GuidSource(MappedGuid("fwcfg", 0x1000, "test", mapping), None, 200)
except SourceUnavailable as e:
    print(e)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_without_its_poll_thread_the_guid_tier_is_unavailable(tmp_path):
    """No fallback loop: a GUID tier whose thread cannot start is skipped
    with the reason (the ladder goes on to the next tier), never served
    half."""
    memory = tmp_path / "mem"
    memory.write_bytes(bytes(0x2000))
    memory.chmod(0o644)
    tmp_path.chmod(0o755)
    out = subprocess.run([sys.executable, "-c", NO_THREAD, str(memory)],
                         capture_output=True, text=True, check=True,
                         cwd=REPO).stdout
    assert out.startswith("cannot start the GUID poll thread: "), out
    assert "Resource temporarily unavailable" in out, out


# -- one kind of part ---------------------------------------------------------

def drivers() -> list[type]:
    """Every Source subclass the tiers' modules define."""
    import cuse_vmgenid.sources.guid
    import cuse_vmgenid.sources.none
    found = {cls for module in (*map(inspect.getmodule,
                                     sources.DRIVERS.values()),
                                cuse_vmgenid.sources.guid,
                                cuse_vmgenid.sources.none)
             for _, cls in inspect.getmembers(module, inspect.isclass)
             if issubclass(cls, sources.Source) and cls is not sources.Source}
    return sorted(found, key=lambda cls: cls.__name__)


INTERFACE = {name for name in dir(sources.Source) if not name.startswith("_")}


def test_the_interface_is_narrow():
    assert INTERFACE == {"name", "unseen", "interval", "detection", "fds",
                         "ready", "check", "restart", "mark", "start",
                         "stop", "published", "close"}


def test_each_tier_is_one_module_with_its_open_tier():
    for name, open_tier in sources.DRIVERS.items():
        module = inspect.getmodule(open_tier).__name__
        assert module == "cuse_vmgenid.sources." + name.replace("-", ""), \
            (name, module)
        assert open_tier.__name__ == "open_tier"
        params = list(inspect.signature(open_tier).parameters.values())
        assert params[0].name == "poll_interval_ms"
        assert all(p.default is not p.empty for p in params[1:]), name


@pytest.mark.parametrize("driver", drivers(), ids=lambda cls: cls.__name__)
def test_every_driver_satisfies_the_interface(driver):
    """Each method of the interface a driver overrides takes what the
    interface's does (more only with a default), and its name is one of
    the tiers."""
    assert {cls.__name__ for cls in drivers()} == {
        "GuidSource", "KernelLogSource", "NoSource", "VmclockSource"}
    for name in INTERFACE:
        ours = getattr(sources.Source, name)
        theirs = getattr(driver, name)
        if not callable(ours):
            continue
        want = list(inspect.signature(ours).parameters)
        params = list(inspect.signature(theirs).parameters.values())
        assert [p.name for p in params[:len(want)]] == want, (driver, name)
        assert all(p.default is not p.empty for p in params[len(want):]), \
            (driver, name)
    if driver.name:         # GuidSource's is its tier's: fwcfg or acpi
        assert driver.name in sources.SOURCE_CHOICES


# What the daemon asked of a tier before the tiers were one kind of part
# (`changed`, the hooks' word too, is checked on self.source above).
TIER_WORDS = {"has_guid", "kmsg_seq", "vmclock_counter", "guid_bytes",
              "read_guid", "daemon_reseeds", "change_note", "changed_since",
              "poll_interval", "hint_fds", "take_hint", "publish_to",
              "notifies", "pollable", "devices"}


def daemon_tree() -> ast.Module:
    return ast.parse(inspect.getsource(daemon))


def test_the_daemon_asks_a_source_only_what_the_interface_says():
    """Every member of self.source the daemon names is the interface's."""
    used = {node.attr for node in ast.walk(daemon_tree())
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "source"}
    assert used and used <= INTERFACE, used - INTERFACE


def test_the_daemon_never_asks_which_tier_it_has():
    """No tier-specific member, no driver class, no type test anywhere in
    the daemon's module: what differs per tier is in the Change."""
    tier_only = {name for driver in drivers() for name in vars(driver)
                 if not name.startswith("_")} - INTERFACE
    named = set()
    for node in ast.walk(daemon_tree()):
        if isinstance(node, ast.Attribute):
            named.add(node.attr)
        elif isinstance(node, ast.Name):
            named.add(node.id)
        elif isinstance(node, ast.alias):
            named.add(node.name.rsplit(".", 1)[-1])
    assert not named & (TIER_WORDS | tier_only), named & (TIER_WORDS
                                                         | tier_only)
    assert not named & {cls.__name__ for cls in drivers()}
    assert not named & {"isinstance", "type"}
    assert not named & {"acpi", "fwcfg", "kernellog", "vmclock", "none"}


def test_the_sources_import_nothing_of_the_device_or_the_service():
    """The arrows: sources -> publisher <- daemon.  A source is handed the
    publisher (start()) and the publisher asks it for its mark; no module
    of sources/ imports device/ or service/."""
    folder = os.path.dirname(sources.__file__)
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(folder, name)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert (node.module or "").split(".")[0] not in (
                    "device", "service"), (name, node.module)


def test_the_guid_tier_hands_the_guid_to_compare_and_judges_a_restart(
        tmp_path):
    """GuidSource on a file laid out as guest memory: a look hands the
    publisher where the GUID is (it reads and compares; the view is
    live), asking for a reseed unless the
    kernel did; a restart is a change when the GUID is not the saved one;
    the mark is the GUID the publisher compares with first."""
    from cuse_vmgenid.device.statefile import SavedState
    from cuse_vmgenid.sources.memory import guid_string

    from .faces import GuestMemory

    old, new = bytes(range(16)), bytes(range(16, 32))
    memory = GuestMemory(tmp_path / "mem", old)
    source = memory.source()
    try:
        saved = SavedState("boot", 3, guid_string(old))
        assert source.restart(saved) is None
        assert source.mark() == sources.Mark(guid=old)
        assert source.restart(None) == sources.Change(None)   # none saved
        memory.write(new)
        look = source.check()
        assert look == sources.Change(None, reseed=True, guid=new)
        memory.write(old)
        assert look.guid == old     # live: the publisher reads it now
        memory.write(new)
        assert source.restart(saved) == sources.Change(None)
        assert source.mark().guid == new
        assert source.fds() and source.interval is None
    finally:
        source.close()
