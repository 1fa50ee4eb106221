#!/bin/sh
# SPDX-License-Identifier: MIT
# The guest side of tests/system/test_hooks_examples.py, run by systemd
# (PID 1) once basic.target is reached.  Arguments: cuse-vmgenid's .deb,
# python3-vmgenid's (it depends on it), and a folder of hooks to install in /etc/vmgenid/hooks.d first (the
# examples of docs/hooks.rst as written, and the test's own), both
# relative to the repo.  What an administrator with those hooks has is
# set up as they would have it: the folder myapp writes, a myapp.service
# and an ssh.service (stand-ins: each records its starts), old host keys.
# Then the package is installed, the generation changed (`vmgenid bump`,
# as root), VMGENID_WAIT_WATCHERS asked from a fresh watcher, and what
# the hooks did is printed; the same once more after a daemon restart.
# Every finding is a marker line for the host to judge.
deb=$1
client=$2
hooks=$3
tools=native/build

tag() {                 # every line of stdin as "$1 <line>"
	sed "s/^/$1 /"
}

starts() {              # how many times a stand-in service started
	wc -l < /run/$1.starts 2>/dev/null || echo 0
}

keys() {                # the host keys' fingerprints, one line
	for key in /etc/ssh/ssh_host_*_key.pub; do
		[ -e "$key" ] && ssh-keygen -l -f "$key" | cut -d' ' -f2
	done | sort | tr '\n' ' '
}

# Until the hooks' watcher (or, on an older package, the daemon's) is
# one of the daemon's watchers: VMGENID_WAIT_WATCHERS waits only for
# watchers that exist.  Bounded.
wait_for_watcher() {
	for i in $(seq 300); do
		n=$(/usr/bin/vmgenid status --json 2>/dev/null |
			/usr/bin/python3 -c 'import json, sys
s = json.load(sys.stdin)
print(s["watchers"] + (1 if s.get("hooks", {}).get("enabled") else 0))' 2>/dev/null)
		[ "${n:-0}" -ge 1 ] && break
		sleep 0.2
	done
	echo "WATCHERS $1 ${n:-none}"
}

# The change and the wait an orchestrator does: bump, then wait until
# every watcher has acknowledged it (120 s: a rescue, not a measure).
change() {
	echo "BUMPED $1 $(/usr/bin/vmgenid bump 2>&1)"
	echo "WAITED $1 $($tools/vmgenid-ioctl wait 120000 2>&1)"
	echo "INSTANCE-ID $1 $(cat /var/lib/myapp/instance-id 2>&1)"
	echo "SLOW-DONE $1 $(cat /run/slow-hook.done 2>&1)"
	echo "KEYS $1 $(keys)"
	echo "SSH-STARTS $1 $(starts ssh)"
	# --no-block: the restart may still be under way (bounded).
	for i in $(seq 100); do
		[ "$(starts myapp)" -gt "$2" ] && break
		sleep 0.1
	done
	echo "MYAPP-STARTS $1 $(starts myapp)"
}

echo "BOOTED $(systemctl is-system-running --wait)"

# The administrator's side, before the package.
mkdir -p /etc/vmgenid/hooks.d /var/lib/myapp
for hook in "$hooks"/*; do
	install -m 0755 "$hook" /etc/vmgenid/hooks.d/
done
ls /etc/vmgenid/hooks.d | tag HOOK
for service in myapp ssh; do
	cat > /run/systemd/system/$service.service <<UNIT
[Service]
ExecStartPre=/bin/sh -c 'echo started >> /run/$service.starts'
ExecStart=/bin/sleep infinity
UNIT
done
systemctl daemon-reload
systemctl start myapp.service ssh.service
ssh-keygen -A > /dev/null
echo "KEYS before $(keys)"

dpkg -i "$client" "$deb" > /tmp/dpkg.log 2>&1
echo "DPKG $?"
for unit in cuse-vmgenid cuse-vmgenid-hooks; do
	echo "ACTIVE $unit $(systemctl is-active $unit)"
	echo "ENABLED $unit $(systemctl is-enabled $unit 2>&1)"
done
echo "SECURITY $(systemd-analyze security --no-pager cuse-vmgenid |
	tail -n 1)"
wait_for_watcher installed

change first 1
systemctl restart cuse-vmgenid
echo "RESTART-RC $?"
wait_for_watcher restarted
rm -f /run/slow-hook.done
change second "$(starts myapp)"

journalctl -b -p err -o cat --no-pager | tag JOURNAL-ERR
journalctl -b -u cuse-vmgenid -u cuse-vmgenid-hooks -o cat --no-pager |
	tag JOURNAL
echo "DONE"
