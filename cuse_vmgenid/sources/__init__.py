# SPDX-License-Identifier: MIT
"""Where changes of generation come from (docs/interface.rst, same title;
docs/design.rst, "Change sources"): a ladder of tiers, best first, each a
module whose open_tier(poll_interval_ms) returns a base.Source or raises
base.SourceUnavailable; `--source auto` takes the first that works.

Without any tier (`none`, none.py) every hint is taken as a change, and
hardware changes are not seen at all: the log, the status file and
`vmgenid status` say so.
"""

import logging

from . import acpi, fwcfg, kernellog, vmclock
from .base import (UNSEEN, Change, Mark, Source, SourceUnavailable,
                   unseen)
from .none import NoSource

__all__ = ["Change", "Mark", "NoSource", "SOURCE_CHOICES", "Source",
           "SourceUnavailable", "TIERS", "UNSEEN", "open_source", "unseen"]

log = logging.getLogger(__name__)

# The tiers, best first (docs/interface.rst, "Where changes come from"):
# each one's open_tier(poll_interval_ms).
DRIVERS = {"fwcfg": fwcfg.open_tier, "acpi": acpi.open_tier,
           "vmclock": vmclock.open_tier, "kernel-log": kernellog.open_tier}
TIERS = tuple(DRIVERS)
SOURCE_CHOICES = ("auto", *TIERS, "none")


def open_source(choice: str, poll_interval_ms: int) -> Source:
    """The first tier that works of those @choice allows (auto: all, best
    first), with one log line per tier skipped and why; `none` (loudly)
    if none works."""
    if choice == "none":
        source = NoSource("--source none was asked for")
        log.warning("source tier none: %s", source.unseen)
        return source
    skipped = []
    for name, open_tier in DRIVERS.items():
        if choice not in ("auto", name):
            continue
        try:
            source = open_tier(poll_interval_ms)
        except SourceUnavailable as e:
            # Normal where the hypervisor has no such device: INFO.  If
            # no tier works, the error below repeats every reason.
            log.info("source tier %s skipped: %s", name, e.reason)
            skipped.append(f"{name}: {e.reason}")
            continue
        log.info("source tier %s (--source %s)", name, choice)
        return source
    source = NoSource("; ".join(skipped))
    log.error("source tier none (--source %s): %s; every hint and every "
              "restart bumps", choice, source.unseen)
    return source

