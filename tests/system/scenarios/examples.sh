#!/bin/sh
# SPDX-License-Identifier: MIT
# The guest side of tests/system/test_documented_examples.py, run by
# systemd (PID 1) from the harness's unit, in the repo: the examples of
# README and vmgenid(1) that need the installed package, each taken out
# of its document as written (`python3 -m tests.examples NAME`, names of
# tests/examples.py) and run by the user the document says: root where
# it says so, nobody otherwise.  Argument: the build's cuse-vmgenid .deb,
# relative to the repo, beside the build's other packages.  Every finding is a marker line for the host to
# judge; this script judges nothing.
deb=$1
repo=$(pwd)
unit=cuse-vmgenid
nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"

example() {             # the text of example $1
	(cd "$repo" && python3 -m tests.examples "$1")
}

tag() {                 # every line of stdin as "$1 <line>"
	sed "s/^/$1 /"
}

watchers() {            # until the daemon counts $1 watchers (bounded)
	for i in $(seq 300); do
		vmgenid status --json 2>/dev/null |
			python3 -c 'import json, sys
sys.exit(json.load(sys.stdin)["watchers"] != int(sys.argv[1]))' "$1" &&
			return 0
		sleep 0.1
	done
	return 1
}

# "wait in one shell (nobody), bump in another as root": $1 the waiter's
# example, $2 the bumper's, $3 the tag.
wait_and_bump() {
	$nobody sh -c "$(example "$1")" > /tmp/waiter.out 2>&1 &
	waiter=$!
	watchers 1
	echo "$3-WATCHING $?"
	sh -c "$(example "$2")" > /tmp/bumper.out 2>&1
	echo "$3-BUMP-RC $?"
	tag "$3-BUMP-OUT" < /tmp/bumper.out
	wait $waiter
	echo "$3-WAIT-RC $?"
	tag "$3-WAIT-OUT" < /tmp/waiter.out
}

echo "BOOTED $(systemctl is-system-running --wait)"

# README, "Running the daemon" without the package: as root, in the
# checkout.  pip finds what it builds with in build/wheelhouse (the host
# downloaded it: a guest has no network).  The daemon stays in the
# foreground: once it serves, `vmgenid status`, then SIGTERM.
PIP_NO_INDEX=1 PIP_FIND_LINKS=$repo/build/wheelhouse \
	sh -c "$(example README_VENV)" > /tmp/venv.out 2>&1 &
venv=$!
for i in $(seq 1200); do       # a build under emulation: minutes
	[ -c /dev/vmgenid ] &&
		/opt/cuse-vmgenid/bin/vmgenid status > /dev/null 2>&1 && break
	kill -0 $venv 2>/dev/null || break
	sleep 0.5
done
/opt/cuse-vmgenid/bin/vmgenid status > /tmp/venv-status.out 2>&1
echo "VENV-STATUS-RC $?"
tag VENV-STATUS-OUT < /tmp/venv-status.out
kill $(python3 -c 'import json
print(json.load(open("/run/vmgenid/status.json"))["daemon_pid"])')
wait $venv
echo "VENV-RC $?"
tail -n 40 /tmp/venv.out | tag VENV-OUT
echo "VENV-NODE-AFTER $(stat -c '%F' /dev/vmgenid 2>&1)"

# README, "Install it in a guest": as root, in a folder holding the
# packages `make deb` built, as copied into the guest.
rm -rf /tmp/install
mkdir -p /tmp/install
cp "$(dirname "$deb")"/*.deb /tmp/install/
(cd /tmp/install && sh -c "$(example README_INSTALL)") > /tmp/install.out 2>&1
echo "INSTALL-RC $?"
tag INSTALL-OUT < /tmp/install.out
echo "IS-ACTIVE $(systemctl is-active $unit)"
echo "NODE $(stat -c '%F' /dev/vmgenid 2>&1)"
# README, "The Debian package": its apt line, in the checkout (`make deb`
# ran on the build machine): the same package, installed already.
sh -c "$(example README_DEB | grep -v '^make ')" > /tmp/deb.out 2>&1
echo "DEB-RC $?"
tag DEB-OUT < /tmp/deb.out
first_pid=$(systemctl show -p MainPID --value $unit)
echo "MAIN-PID installed $first_pid"

# "Check it": vmgenid status, by anyone.
watchers 0
$nobody sh -c "$(example README_STATUS)" > /tmp/status.out 2>&1
echo "STATUS-RC $?"
tag STATUS-OUT < /tmp/status.out

wait_and_bump README_WAIT README_BUMP README
wait_and_bump MAN_WAIT MAN_BUMP MAN

# "Choose options": the line into /etc/default/cuse-vmgenid, in place of
# the package's, then the restart, as root.
line=$(example README_OPTIONS)
grep -v '^CUSE_VMGENID_OPTS=' /etc/default/cuse-vmgenid > /tmp/default
echo "$line" >> /tmp/default
cat /tmp/default > /etc/default/cuse-vmgenid
sh -c "$(example README_RESTART)"
echo "RESTART-RC $?"
echo "MAIN-PID restarted $(systemctl show -p MainPID --value $unit)"
echo "PAGE-LINK $(readlink /dev/sysgenid 2>&1)"
# --max-watchers-per-uid 256: an ordinary user's 257th open is refused.
$nobody python3 -c '
import errno, os
fds = []
try:
    while len(fds) < 300:
        fds.append(os.open("/dev/vmgenid", os.O_RDWR))
except OSError as e:
    print(len(fds), errno.errorcode[e.errno])
else:
    print(len(fds), "no refusal")' | tag QUOTA

# "Order your units": a unit with README's [Unit] lines, queued while the
# daemon is stopped, starts once the daemon is ready and finds the node
# and the page's link from its start.
systemctl stop $unit
echo "NODE-STOPPED $(stat -c '%F' /dev/vmgenid 2>&1)"
{
	example README_UNIT
	cat <<'UNIT'
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'stat -c "CLIENT %%F" /dev/vmgenid; echo "CLIENT $$(readlink /dev/sysgenid)"'
UNIT
} > /run/systemd/system/readme-client.service
systemctl daemon-reload
systemctl start --no-block readme-client.service
echo "CLIENT-START-RC $?"
sleep 2
systemctl list-jobs --no-legend | tag JOBS
echo "CLIENT-QUEUED $(systemctl show -p ActiveState --value readme-client) $(systemctl list-jobs --no-legend readme-client.service | wc -l)"
systemctl start $unit
echo "START-RC $?"
for i in $(seq 300); do
	[ "$(systemctl list-jobs --no-legend readme-client.service | wc -l)" = 0 ] && break
	sleep 0.1
done
echo "CLIENT-RESULT $(systemctl show -p Result --value readme-client)"
journalctl -b -u readme-client -o cat --no-pager | tag CLIENT-JOURNAL
journalctl -b -u readme-client -o cat --no-pager | grep '^CLIENT ' |
	sed 's/^CLIENT /CLIENT-SAW /'
journalctl -b -u $unit -o cat --no-pager | tag JOURNAL
echo "DONE"
