# SPDX-License-Identifier: MIT
"""GuestVM: a guest that runs in the background and can be saved and
restored for real, as a hypervisor does (the VM Generation ID changes
only that way: QEMU refuses to change it on a running VM).

    with GuestVM(kernel="6.12", command=[...], guid=uuid1) as vm:
        vm.wait_for(r"READY", timeout=300)      # the console, a regex
        snap = vm.save(path)                    # stop, migrate to a file
        vm.restore(snap, guid=uuid2)            # new QEMU, -incoming, cont
        vm.wait_for(r"WOKE (\\d+)", timeout=120)
        rc = vm.wait_exit(timeout=120)          # the command's exit code

    clone = GuestVM.from_snapshot(snap, guid=uuid3)   # another VM, too

The guest's root is the read-only squashfs pair of rootimage.py (9p
blocks migration) under a tmpfs, the command runs as root in the repo as
with run_in_guest().  The console is one stream across restores: the
restored QEMU's serial port is the same guest console; vm.output has it
all.  wait_for() searches from where its previous match (or the last
save) ended, complete lines only, and raises GuestError on a panic, on
the command's exit, on QEMU's exit, and on timeout.
"""

import bisect
import codecs
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .cache import HarnessError
from .console import BOOT_ATTEMPTS, Console
from .guest import guest_script
from .images import GuestImage, prepare
from .qemu import GRACE_SECONDS, QEMU, qemu_command
from .qmp import QMP, QMPError
from .rootimage import RootImages, prepare_root

# Migration's default bandwidth cap (32 MiB/s) would make saving slow.
SAVE_BANDWIDTH = 64 << 30
SAVE_TIMEOUT = 300
# The QEMU that migrates to a file: URI (and no longer to a file's fd:).
FILE_MIGRATION = (8, 2)
RESTORE_TIMEOUT = 300


class GuestError(HarnessError):
    """The guest did not do what a GuestVM call waited for."""


@dataclass(frozen=True)
class VMConfig:
    """What must be the same for a QEMU that restores a saved guest."""
    image: GuestImage
    root: RootImages
    script: str             # the shell script init.sh runs (fw_cfg)
    mem_mb: int
    systemd: bool           # systemd is init and runs the script
    kernel_args: str = ""   # more for the guest's command line
    qemu: tuple[str, ...] = QEMU    # the command that runs QEMU
    vmgenid: bool = True    # a vmgenid device (with the GUID of each run)
    devices: tuple[str, ...] = ()   # more -device values


@dataclass(frozen=True)
class Snapshot:
    path: Path
    config: VMConfig
    size: int               # bytes
    save_seconds: float     # stop to migration completed


class GuestVM:
    def __init__(self, kernel: str, command: list[str] | str, *,
                 guid: str | None = None, env: dict[str, str] | None = None,
                 mem_mb: int = 1024, systemd: bool = False, out=None,
                 kernel_args: str = "", qemu: list[str] | None = None,
                 vmgenid: bool = True, devices: list[str] | None = None,
                 _config: VMConfig = None):
        """Boot a @kernel (kernels.FLAVOURS) guest that runs @command (argv
        list or shell code) as root in the repo; returns at once.  With
        @systemd, systemd is the guest's init and runs @command from a
        unit once basic.target is reached (init.sh).  @kernel_args: more
        for the kernel's command line (e.g. "lockdown=integrity").
        @qemu: the command that runs QEMU (sidqemu.SidQemu.argv(): sid's,
        for -device vmclock), the machine's own by default; @vmgenid False:
        no vmgenid device (no GUID); @devices: more -device values."""
        self.console = Console(out)
        self.cond = threading.Condition()
        self.cursor = 0         # wait_for() searches vm.output from here
        self.qemu = None
        self.qmp = None
        self.reader = None
        self.rundir = None
        self.guid = None
        self.config = _config
        # (len(vm.output) after a chunk of console, time.monotonic() when
        # it was read from QEMU), for arrived_at().
        self.arrivals: list[tuple[int, float]] = []
        self._counted = 0       # console.output items summed in arrivals
        # Boots left to try again after a panic before the command started
        # (console.BOOT_ATTEMPTS); a restored VM has booted already.
        self._boots_left = 0
        if _config is not None:
            return              # from_snapshot() restores it
        if not isinstance(command, str):
            command = shlex.join(command)
        self.config = VMConfig(prepare(kernel), prepare_root(),
                               guest_script(command, env or {}), mem_mb,
                               systemd, kernel_args, tuple(qemu or QEMU),
                               vmgenid, tuple(devices or ()))
        self._boots_left = BOOT_ATTEMPTS - 1
        self._start(self._guid(guid))

    def _guid(self, guid: str | None) -> str | None:
        """The GUID a run of this VM gets: @guid, or a random one; None
        without a vmgenid device."""
        if not self.config.vmgenid:
            if guid is not None:
                raise GuestError("a GUID for a VM without a vmgenid device")
            return None
        return guid or str(uuid.uuid4())

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot, *, guid: str | None = None,
                      out=None) -> "GuestVM":
        """Another VM restored from @snapshot (a clone: any number of
        them, one after another or at once); its output starts at the
        restore."""
        vm = cls(None, "", out=out, _config=snapshot.config)
        try:
            vm.restore(snapshot, guid=guid)
        except BaseException:
            vm.close()
            raise
        return vm

    # -- QEMU and its console --------------------------------------------

    def _start(self, guid: str, incoming: Path | None = None) -> None:
        self.rundir = Path(tempfile.mkdtemp(prefix="vmgenid-vm-",
                                            dir="/tmp"))
        script = self.rundir / "script.sh"
        script.write_text(self.config.script)
        qmp_path = self.rundir / "qmp.sock"
        command = qemu_command(self.config.image, self.config.kernel_args,
                               mem_mb=self.config.mem_mb, guid=guid,
                               block_root=self.config.root, script=script,
                               systemd=self.config.systemd,
                               qemu=self.config.qemu,
                               devices=self.config.devices)
        command += ["-qmp", f"unix:{qmp_path},server=on,wait=off"]
        if incoming is not None:
            command += ["-incoming",
                        f"exec:cat {shlex.quote(str(incoming))}"]
        self.guid = guid
        self.qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, args=(self.qemu,),
                                       daemon=True)
        self.reader.start()
        self.qmp = QMP(str(qmp_path), alive=lambda: self.qemu.poll() is None)

    def _read(self, qemu: subprocess.Popen) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while data := os.read(qemu.stdout.fileno(), 65536):
            arrived = time.monotonic()
            with self.cond:
                self.console.feed(decoder.decode(data))
                self._note_arrival(arrived)
                self.cond.notify_all()
        with self.cond:
            self.console.feed(decoder.decode(b"", final=True))
            self.cond.notify_all()

    def _stop_qemu(self, timeout: float) -> int | None:
        """Wait up to @timeout for QEMU to exit, then kill it; its exit
        status (None if killed) once its console is read to the end."""
        status = None
        if self.qemu is not None:
            try:
                status = self.qemu.wait(timeout)
            except subprocess.TimeoutExpired:
                self.qemu.kill()
                self.qemu.wait()
            self.reader.join()
            self.qemu.stdout.close()
            if self.qmp is not None:
                self.qmp.close()
        if self.rundir is not None:
            shutil.rmtree(self.rundir, ignore_errors=True)
        self.qemu = self.qmp = self.reader = self.rundir = None
        return status

    def _note_arrival(self, arrived: float) -> None:
        output = self.console.output
        length = self.arrivals[-1][0] if self.arrivals else 0
        length += sum(len(text) for text in output[self._counted:])
        self._counted = len(output)
        if not self.arrivals or length > self.arrivals[-1][0]:
            self.arrivals.append((length, arrived))

    def arrived_at(self, pos: int) -> float | None:
        """time.monotonic() when the console character at @pos of
        vm.output (say a wait_for() match's end(): its newline) was read
        from QEMU; None if it has not arrived."""
        with self.cond:
            i = bisect.bisect_right(self.arrivals, pos,
                                    key=lambda arrival: arrival[0])
            return self.arrivals[i][1] if i < len(self.arrivals) else None

    @property
    def output(self) -> str:
        """The console so far: every QEMU's, without init.sh's markers."""
        with self.cond:
            return "".join(self.console.output)

    @property
    def exit_code(self) -> int | None:
        return self.console.exit_code

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def _fail(self, message: str):
        raise GuestError(f"{message} (kernel {self.config.image.release}); "
                         f"console tail:\n{self.tail()}")

    # -- the API -----------------------------------------------------------

    def _boot_again(self) -> bool:
        """After a panic: if it came while booting (console.BOOT_ATTEMPTS
        says why) and a boot is left, boot again with the same options and
        GUID, and True."""
        with self.cond:
            if not (self.console.panicked_while_booting
                    and self._boots_left > 0):
                return False
            self._boots_left -= 1
        print("\nharness: WARNING: the guest kernel panicked while booting, "
              "before the command started (kernel "
              f"{self.config.image.release}): booting again",
              file=sys.stderr, flush=True)
        self._stop_qemu(GRACE_SECONDS)
        with self.cond:
            self.console.panicked = False
            self.cursor = len("".join(self.console.output))
        self._start(self.guid)
        return True

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first match of @pattern (re.MULTILINE) in the complete
        console lines after the previous match; GuestError if the guest
        panics, its command exits, QEMU exits, or @timeout passes first."""
        while True:
            try:
                return self._wait_for(pattern, timeout)
            except GuestError:
                if not self._boot_again():
                    raise

    def _wait_for(self, pattern: str, timeout: float) -> re.Match:
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                text = "".join(self.console.output)
                found = regex.search(text, self.cursor,
                                     text.rfind("\n") + 1)
                if found:
                    self.cursor = found.end()
                    return found
                if self.console.panicked:
                    self._fail(f"the guest kernel panicked before {pattern!r}")
                if self.console.exit_code is not None:
                    self._fail(f"the guest command exited "
                               f"{self.console.exit_code} before {pattern!r}")
                if self.qemu is None or not self.reader.is_alive():
                    self._fail(f"QEMU exited before {pattern!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._fail(f"no {pattern!r} within {timeout:g} s")
                self.cond.wait(remaining)

    def wait_exit(self, timeout: float) -> int:
        """The guest command's exit code, once the guest powered off;
        GuestError if it panics, or QEMU exits without it, or timeout."""
        while True:
            try:
                return self._wait_exit(timeout)
            except GuestError:
                if not self._boot_again():
                    raise

    def _wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self.cond:
            while (self.console.exit_code is None and
                   not self.console.panicked and self.qemu is not None and
                   self.reader.is_alive()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._fail(f"the guest command did not exit within "
                               f"{timeout:g} s")
                self.cond.wait(remaining)
        self._stop_qemu(GRACE_SECONDS)
        if self.console.exit_code is None:
            self._fail("the guest kernel panicked" if self.console.panicked
                       else "QEMU exited before the guest command did")
        return self.console.exit_code

    def save(self, path: Path | str) -> Snapshot:
        """Stop the guest and migrate it into the file @path, as a
        hypervisor saves a VM; this QEMU then quits."""
        if self.qemu is None:
            raise GuestError("save(): the VM is not running")
        path = Path(path)
        started = time.monotonic()
        self.qmp.command("stop")
        self.qmp.command("migrate-set-parameters",
                         **{"max-bandwidth": SAVE_BANDWIDTH})
        # A file QEMU writes itself: once migration has completed, all of
        # it is written (with exec:cat QEMU may SIGTERM cat before that).
        # QEMU 8.2+ opens it (file:, and refuses a file's fd since); 7.2
        # is given it open.
        version = self.qmp.command("query-version")["qemu"]
        if (version["major"], version["minor"]) >= FILE_MIGRATION:
            self.qmp.command("migrate", uri=f"file:{path.resolve()}")
        else:
            with open(path, "wb") as snapshot:
                self.qmp.command("getfd", fdname="snapshot",
                                 fds=[snapshot.fileno()])
            self.qmp.command("migrate", uri="fd:snapshot")
        while True:
            state = self.qmp.command("query-migrate")
            status = state.get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled"):
                self._fail(f"saving failed: {state.get('error-desc', status)}")
            if time.monotonic() - started > SAVE_TIMEOUT:
                self._fail(f"saving took over {SAVE_TIMEOUT} s: {state}")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        try:
            self.qmp.command("quit")
        except QMPError:
            pass                # it quit before it could say so
        self._stop_qemu(GRACE_SECONDS)
        with self.cond:
            self.cursor = len("".join(self.console.output))
        return Snapshot(path, self.config, path.stat().st_size, seconds)

    def restore(self, snapshot: Snapshot, *,
                guid: str | None = None) -> float:
        """Start a new QEMU with the same options and the VM Generation
        ID @guid (a random one if None; none without a vmgenid device),
        load @snapshot into it and let it run; the host's
        time.monotonic() when QEMU answered `cont`."""
        if self.qemu is not None:
            raise GuestError("restore(): the VM is still running; save() it")
        if snapshot.config != self.config:
            raise GuestError("restore(): the snapshot is of another VM; "
                             "use GuestVM.from_snapshot()")
        self._start(self._guid(guid), incoming=snapshot.path)
        deadline = time.monotonic() + RESTORE_TIMEOUT
        while (status := self.qmp.command("query-status")["status"]
               ) == "inmigrate":
            if time.monotonic() > deadline:
                self._fail(f"loading {snapshot.path} took over "
                           f"{RESTORE_TIMEOUT} s")
            time.sleep(0.02)
        if status != "paused":
            self._fail(f"after loading {snapshot.path} the VM is {status!r}"
                       ", not paused")
        self.qmp.command("cont")
        return time.monotonic()

    def close(self) -> None:
        """Kill QEMU if it still runs, and clean up."""
        if self.qemu is not None and self.qemu.poll() is None:
            self.qemu.kill()
        self._stop_qemu(GRACE_SECONDS)
        with self.cond:
            self.console.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
