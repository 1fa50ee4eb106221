#!/bin/sh
# SPDX-License-Identifier: MIT
# The guest side of tests/system/test_reseed_sandbox.py, run by systemd
# (PID 1): the packaged unit's sandbox (packaging/systemd/
# cuse-vmgenid.service: every line but how it starts) around what the
# publisher does to reseed the kernel RNG on a hardware change
# (native/shim/publisher.c): a write to /dev/urandom, then ioctl
# RNDRESEEDCRNG; and, for contrast, the same without CAP_SYS_ADMIN.
# Prints "PROBE <unit> <result>" lines; judges nothing.
units=/run/systemd/system
probe=/run/vmgenid-reseed-probe.py

# RNDRESEEDCRNG = _IO('R', 0x07); the write as large as the publisher's.
cat > $probe <<'END'
import errno, fcntl, os
try:
    fd = os.open("/dev/urandom", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, os.urandom(104))
    fcntl.ioctl(fd, 0x5207)
    print("RESULT reseeded")
except OSError as e:
    print("RESULT failed", errno.errorcode[e.errno])
END

unit() {                # $1: the unit's name; then more sed arguments
	name=$1
	shift
	sed -e '/^ExecStart=/d' -e '/^ExecReload=/d' -e '/^EnvironmentFile=/d' \
		-e '/^Restart=/d' -e 's/^Type=.*/Type=oneshot/' "$@" \
		packaging/systemd/cuse-vmgenid.service > $units/$name.service
	printf '[Service]\nExecStart=/usr/bin/python3 %s\n' $probe \
		>> $units/$name.service
}

unit vmgenid-reseed
unit vmgenid-reseed-nocap -e 's/CAP_SYS_ADMIN //'
# ReadWritePaths=: the package's tmpfiles.d makes it at boot.
mkdir -p -m 0755 /run/vmgenid
systemctl daemon-reload
for name in vmgenid-reseed vmgenid-reseed-nocap; do
	systemctl start $name.service
	echo "PROBE $name exit $?"
	journalctl -u $name -o cat --no-pager | grep '^RESULT ' |
		sed "s/^RESULT /PROBE $name /"
	journalctl -u $name -o cat --no-pager | sed "s/^/JOURNAL $name /"
done
