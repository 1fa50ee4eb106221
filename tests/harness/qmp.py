# SPDX-License-Identifier: MIT
"""A small synchronous QMP client (QEMU's JSON monitor on a unix socket)."""

import json
import socket
import time

from .cache import HarnessError


class QMPError(HarnessError):
    """QEMU answered a command with an error, or the monitor went away."""


class QMP:
    """Connects to QEMU's -qmp unix:PATH,server=on,wait=off and says
    qmp_capabilities.  Events that arrive are kept in .events."""

    def __init__(self, path: str, *, timeout: float = 30, alive=None):
        """Retries until QEMU listens on @path, for @timeout seconds or
        until @alive() says QEMU has died."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as err:
                self.sock.close()
                if alive is not None and not alive():
                    raise QMPError("QEMU exited before its QMP socket "
                                   "was up") from None
                if time.monotonic() > deadline:
                    raise QMPError(f"no QMP on {path}: {err}") from None
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.buffer = b""
        self.events: list[dict] = []
        greeting = self._receive()
        if "QMP" not in greeting:
            raise QMPError(f"not a QMP greeting: {greeting}")
        self.command("qmp_capabilities")

    def _receive(self) -> dict:
        while b"\n" not in self.buffer:
            try:
                data = self.sock.recv(65536)
            except OSError as err:
                raise QMPError(f"QMP: {err}") from None
            if not data:
                raise QMPError("QEMU closed the QMP socket")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def command(self, name: str, *, fds: list[int] = (), **arguments):
        """Run a QMP command, passing it @fds (SCM_RIGHTS, as getfd
        wants); its "return" value, or QMPError."""
        request = {"execute": name}
        if arguments:
            request["arguments"] = arguments
        data = json.dumps(request).encode() + b"\n"
        try:
            if fds:
                sent = socket.send_fds(self.sock, [data], list(fds))
                self.sock.sendall(data[sent:])
            else:
                self.sock.sendall(data)
        except OSError as err:
            raise QMPError(f"QMP {name}: {err}") from None
        while True:
            reply = self._receive()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise QMPError(f"QMP {name}: {reply['error'].get('desc')}")
            elif "return" in reply:
                return reply["return"]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

