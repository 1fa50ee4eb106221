#!/bin/sh
# SPDX-License-Identifier: MIT
# The guest side of tests/system/test_documented_examples.py, run by
# systemd (PID 1) from the harness's unit, in the repo: the examples of
# README and vmgenid(1) that need the installed package, each taken out
# of its document as written (`python3 -m tests.examples NAME`, names of
# tests/examples.py) and run by the user the document says: root where
# it says so, nobody otherwise.  Argument: the build's cuse-vmgenid .deb,
# relative to the repo.  Every finding is a marker line for the host to
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

# README, "Install it in a guest": as root, in a folder holding the
# package, as copied into the guest.
rm -rf /tmp/install
mkdir -p /tmp/install
cp "$deb" /tmp/install/
(cd /tmp/install && sh -c "$(example README_INSTALL)") > /tmp/install.out 2>&1
echo "INSTALL-RC $?"
tag INSTALL-OUT < /tmp/install.out
echo "IS-ACTIVE $(systemctl is-active $unit)"
echo "NODE $(stat -c '%F' /dev/vmgenid 2>&1)"
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
	printf '[Service]\nType=oneshot\n'
	printf 'ExecStart=/usr/bin/stat -c "CLIENT %%F" /dev/vmgenid\n'
	printf 'ExecStart=/bin/sh -c "echo CLIENT $$(readlink /dev/sysgenid)"\n'
} > /run/systemd/system/readme-client.service
systemctl daemon-reload
systemctl start --no-block readme-client.service
sleep 2
echo "CLIENT-QUEUED $(systemctl show -p ActiveState --value readme-client) $(systemctl list-jobs --no-legend readme-client.service | wc -l)"
systemctl start $unit
echo "START-RC $?"
for i in $(seq 300); do
	[ "$(systemctl list-jobs --no-legend readme-client.service | wc -l)" = 0 ] && break
	sleep 0.1
done
echo "CLIENT-RESULT $(systemctl show -p Result --value readme-client)"
journalctl -b -u readme-client -o cat --no-pager | grep '^CLIENT ' |
	sed 's/^CLIENT /CLIENT-SAW /'
journalctl -b -u $unit -o cat --no-pager | tag JOURNAL
echo "DONE"
