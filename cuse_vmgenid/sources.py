"""Where changes of generation come from (SPEC.md, "Where changes come from").

Only the software source exists so far: FORCE_GEN_UPDATE(_MIN) ioctls, and
hints (VMGENID_NOTIFY, SIGUSR1) that each bump since there is no GUID to
look at.  The GUID watcher (fw_cfg / ACPI) is not written yet.
"""

import logging
from typing import Optional

log = logging.getLogger(__name__)

SOURCE_CHOICES = ("auto", "fwcfg", "acpi", "none")


class NoSource:
    """No GUID: every hint is taken as a change."""
    name = "none"

    def read_guid(self) -> Optional[str]:
        return None

    def changed(self, known_guid: Optional[str]) -> tuple[bool, Optional[str]]:
        """(did the hardware generation change?, the GUID now)."""
        return True, None


def open_source(choice: str) -> NoSource:
    if choice in ("fwcfg", "acpi"):
        raise ValueError(f"--source {choice}: the GUID watcher is not "
                         "implemented yet; use --source none")
    if choice == "auto":
        log.warning("no GUID watcher yet: --source auto uses 'none' "
                    "(every hint and every restart bumps)")
    return NoSource()
