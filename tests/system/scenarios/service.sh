#!/bin/sh
# SPDX-License-Identifier: MIT
# The guest side of tests/system/test_service.py, run by systemd (PID 1)
# from the harness's unit once basic.target is reached: install
# python3-vmgenid alone, with no compiler that runs, and use its command
# and module without a daemon; then install the packages (arguments:
# cuse-vmgenid's and cuse-vmgenid-dev's .deb, relative to the repo, the
# last release's version, and python3-vmgenid's .deb), the daemon's
# relabelled as that release; check the layout and build an example
# against the installed header; check the service and /dev/vmgenid, wait
# for the host to save and restore the guest with a new GUID, then
# install the build itself (an upgrade by version), add a hook, restart it
# with options from /etc/default and stop it.  Every finding is a
# marker line for the host to judge; this script judges nothing.
deb=$1
dev=$2
release=$3
client=$4
unit=cuse-vmgenid
tools=native/build
page=/run/vmgenid/page

tag() {                 # every line of stdin as "$1 <line>"
	sed "s/^/$1 /"
}

counter() {             # the page's counter (docs/interface.rst, The page)
	od -An -tu4 -N4 $page 2>/dev/null | tr -d ' '
}

show() {                # "SHOW <tag> <property>=<value>" lines
	systemctl show -p ActiveState,SubState,Result,Type,ExecMainCode \
		-p ExecMainStatus,MainPID,StatusText,NRestarts,PrivateMounts \
		$unit | tag "SHOW $1"
}

device_unit() {         # "DEVICE-UNIT <tag> <state>": the node's unit
	echo "DEVICE-UNIT $1 $(systemctl show -p ActiveState --value \
		dev-vmgenid.device)"
}

# systemd's StatusText once it shows the page's counter, $2 watchers and
# none outdated (STATUS= goes out with the rate-limited status file, and
# cuse-vmgenid-hooks' watcher acknowledges a change a moment after it:
# bounded wait).
status_text() {
	for i in $(seq 100); do
		text=$(systemctl show -p StatusText --value $unit)
		case "$text" in
		"generation $(counter), $2 watchers, 0 outdated"*) break ;;
		esac
		sleep 0.1
	done
	echo "STATUS-TEXT $1 $text"
}

# A reader blocked in read() on /dev/vmgenid, its lines on fd 3; returns
# once it has opened the device (a change from then on must wake it).
start_reader() {
	rm -f /run/reader.fifo
	mkfifo /run/reader.fifo
	$tools/vmgenid-reader > /run/reader.fifo &
	reader=$!
	exec 3< /run/reader.fifo
	read -r line <&3
	echo "$1 $line"
}

# Its remaining lines and exit status; killed first if $2 says no change
# can wake it.
finish_reader() {
	[ "$2" = wake ] || kill $reader
	while read -r line <&3; do
		echo "$1 $line"
	done
	exec 3<&-
	wait $reader
	echo "$1 exit $?"
}

journal() {             # the service's log since boot, "JOURNAL <line>"
	journalctl -b -u $unit -o cat --no-pager | tag JOURNAL
}

echo "BOOTED $(systemctl is-system-running --wait) uptime $(cut -d' ' -f1 /proc/uptime)"
systemctl --failed --plain --no-legend --no-pager | tag FAILED-UNIT

# The client alone: python3-vmgenid without cuse-vmgenid, on a machine
# where no C compiler runs (gcc's own programs hidden under an empty
# folder), its command and its module without a daemon.
mount -t tmpfs -o ro,mode=0755 none /usr/lib/gcc
echo "ALONE-CC $(echo 'int main(void) { return 0; }' |
	gcc -x c -o /tmp/cc-probe - > /dev/null 2>&1; echo $?)"
dpkg -i "$client" > /dev/null
echo "ALONE-DPKG $?"
echo "ALONE-DAEMON $(dpkg-query -W -f='${db:Status-Status}' cuse-vmgenid \
	2>/dev/null || echo absent)"
echo "ALONE-OWNER $(dpkg -S /usr/bin/vmgenid)"
echo "ALONE-VERSION $(vmgenid --version 2>&1)"
vmgenid status > /tmp/alone.out 2> /tmp/alone.err
echo "ALONE-STATUS $? $(wc -l < /tmp/alone.out) $(wc -l < /tmp/alone.err)"
tag ALONE-STATUS-ERR < /tmp/alone.err
# cffi is importable here (the guest's Python has it): the client leaves
# it, and the daemon's package, alone.
/usr/bin/python3 -c 'import sys, vmgenid
print(vmgenid.__file__, *[m for m in ("cffi", "_cffi_backend",
      "cuse_vmgenid") if m in sys.modules])' 2>&1 | tag ALONE-IMPORT
/usr/bin/python3 -c 'import vmgenid; vmgenid.open()' 2>&1 | tail -n 1 |
	tag ALONE-OPEN
umount /usr/lib/gcc

# The same package as the last release would be: the later install of
# the build must then be an upgrade by version.
rm -rf /tmp/release
dpkg-deb -R "$deb" /tmp/release
sed -i "s/^Version: .*/Version: $release/" /tmp/release/DEBIAN/control
dpkg-deb -b /tmp/release /tmp/release.deb > /dev/null
dpkg -i /tmp/release.deb "$dev"
echo "DPKG $?"
echo "VERSION installed $(dpkg-query -W -f='${Version}' cuse-vmgenid)"
echo "IS-ACTIVE $(systemctl is-active $unit)"
echo "IS-ENABLED $(systemctl is-enabled $unit)"
# cuse-vmgenid-hooks.service, started with it, watches the device too.
status_text installed 1
show installed
if [ "$(systemctl is-active $unit)" != active ]; then
	journal         # nothing below can work: say why and stop
	exit 1
fi
echo "NODE $(stat -c '%F %a' /dev/vmgenid 2>&1)"
echo "COUNTER installed $(counter)"
device_unit installed
echo "SECURITY $(systemd-analyze security --no-pager $unit | tail -n 1)"
# needrestart's view of its conf.d file (needrestart itself is not
# installed here): cuse-vmgenid.service is overridden to "no restart".
echo "NEEDRESTART $(perl -e 'our %nrconf;
	do "/etc/needrestart/conf.d/cuse-vmgenid.conf"; die $@ if $@;
	while (my ($re, $restart) = each %{$nrconf{override_rc}}) {
		print "$restart" if "cuse-vmgenid.service" =~ $re }' 2>&1)"
dpkg-query -W -f='${Conffiles}\n' cuse-vmgenid | awk 'NF { print $1 }' |
	tag CONFFILE

# A client unit ordered after the node, as README says: it starts once
# the node is there and finds it.
cat > /run/systemd/system/vmgenid-client.service <<UNIT
[Unit]
Wants=dev-vmgenid.device
After=dev-vmgenid.device cuse-vmgenid.service
[Service]
Type=oneshot
ExecStart=/usr/bin/test -c /dev/vmgenid
UNIT
systemctl daemon-reload
systemctl start vmgenid-client
echo "CLIENT-UNIT $? $(systemctl show -p Result --value vmgenid-client)"
echo "CLIENT-AFTER $(systemctl show -p After --value vmgenid-client |
	tr ' ' '\n' | grep -c '^dev-vmgenid.device$')"

# The layout: the daemon in /usr/sbin; <linux/vmgenid.h> found through
# pkg-config, and the -dev package's examples built against it from a
# copy, as its README says.
echo "DAEMON-PATH $(command -v cuse-vmgenid)"
ls /usr/share/doc/cuse-vmgenid/README.Debian* | tag README-DEBIAN
echo "PKG-CONFIG $(pkg-config --cflags vmgenid 2>&1)"
rm -rf /tmp/examples
cp -r /usr/share/doc/cuse-vmgenid-dev/examples /tmp/examples
make -C /tmp/examples BUILD=. > /tmp/examples.log 2>&1
echo "EXAMPLES-MAKE $?"
tag EXAMPLES-LOG < /tmp/examples.log
for prog in watchdog async_epoll mmap_probe orchestrator; do
	[ -x /tmp/examples/$prog ] && echo "EXAMPLE-BUILT $prog"
done

# The device answers: an ioctl, a non-blocking read of an up-to-date
# watcher, and a blocked reader woken by a root caller's FORCE_GEN_UPDATE
# (the daemon's privilege check reads /proc/<tid> under its hardening).
$tools/vmgenid-ioctl outdated | tag IOCTL
$tools/vmgenid-reader -n | tag NONBLOCK
start_reader FORCED-READER
status_text reader 2
forced=$($tools/vmgenid-ioctl force) && woken=wake || woken=
echo "FORCE $forced"
finish_reader FORCED-READER $woken
echo "COUNTER forced $(counter)"
# ... and refuses a user without the capability, and root in a user
# namespace of its own (the check compares /proc/<tid>/ns/user).
setpriv --reuid=65534 --regid=65534 --clear-groups \
	$tools/vmgenid-ioctl force | tag FORCE-NOBODY
unshare --user --map-root-user $tools/vmgenid-ioctl force | tag FORCE-USERNS
echo "COUNTER refused $(counter)"

# The host saves the guest now and restores it with a new GUID; the
# service's GUID watcher must bump, and wake a reader blocked across it.
start_reader RESTORE-READER
before=$(counter)
echo "SAVE-ME counter $before"
n=0                     # 300 s: a rescue, not a measure
while [ "$(counter)" = "$before" ] && [ $n -lt 600 ]; do
	sleep 0.5
	n=$((n + 1))
done
[ "$(counter)" = "$before" ] && woken= || woken=wake
finish_reader RESTORE-READER $woken
echo "COUNTER restored $(counter)"
status_text restored 1

# The packaged CLI reads the daemon's status file, rewritten at most every
# 100 ms after a change: until it shows the page's counter (bounded).
status_line() {
	/usr/bin/vmgenid status --json | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["counter"], s["source"]["name"], s["last_change"]["reason"])'
}
for i in $(seq 100); do
	status=$(status_line 2>&1)
	[ "${status%% *}" = "$(counter)" ] && break
	sleep 0.1
done
echo "STATUS $status"

# An upgrade (the build over the release it follows): the daemon keeps running,
# with the code it imported, until an explicit restart (README), and the
# counter does not move.
dpkg -i "$deb" > /dev/null
echo "REINSTALL-DPKG $?"
echo "VERSION upgraded $(dpkg-query -W -f='${Version}' cuse-vmgenid)"
echo "VERSION reported $(cuse-vmgenid --version)"
show reinstalled
echo "COUNTER reinstalled $(counter)"

# hooks.d runs in cuse-vmgenid-hooks.service, started with the daemon: a
# hook added now runs at the next change, with nothing reloaded or
# restarted; one the kernel cannot execute (no #! line) is an error in
# the journal, at priority err.  The daemon has nothing to reload.
echo "HOOKS-UNIT $(systemctl is-active $unit-hooks)"
systemctl reload $unit 2>/dev/null
echo "RELOAD-RC $?"
cat > /etc/vmgenid/hooks.d/50-mark <<'HOOK'
#!/bin/sh
echo "hook 50-mark ran for generation $VMGENID_GENERATION"
HOOK
printf 'echo no interpreter line\n' > /etc/vmgenid/hooks.d/60-broken
chmod 755 /etc/vmgenid/hooks.d/50-mark /etc/vmgenid/hooks.d/60-broken
echo "BUMPED $(/usr/bin/vmgenid bump)"
for i in $(seq 300); do
	journalctl -b -u $unit-hooks -o cat --no-pager |
		grep -q '60-broken (generation' && break
	sleep 0.1
done
show hooked
journalctl -b -u $unit-hooks -o cat --no-pager | tag HOOKS-JOURNAL
journalctl -b -u $unit -u $unit-hooks -p err -o cat --no-pager |
	tag JOURNAL-ERR
rm /etc/vmgenid/hooks.d/50-mark /etc/vmgenid/hooks.d/60-broken

# Options through /etc/default/cuse-vmgenid (a conffile), taken at the
# restart: a page link.
sed -i 's|^CUSE_VMGENID_OPTS=.*|CUSE_VMGENID_OPTS="--page-link /run/vmgenid/linked"|' \
	/etc/default/cuse-vmgenid
before=$(counter)
systemctl restart $unit
echo "RESTART-RC $?"
echo "IS-ACTIVE $(systemctl is-active $unit)"
show restarted
echo "COUNTER restarted $(counter) (before $before)"
status_text restarted 1
echo "PAGE-LINK $(readlink /run/vmgenid/linked 2>&1)"

systemctl stop $unit
echo "STOP-RC $?"
show stopped
if [ -e /dev/vmgenid ]; then
	echo "NODE-AFTER-STOP present"
else
	echo "NODE-AFTER-STOP absent"
fi
device_unit stopped
journal
# What systemd (PID 1) logged of the unit's device list, from any unit:
# it logs a DeviceAllow= node that does not exist without the unit's name.
journalctl -b _PID=1 -o cat --no-pager | grep -i 'device' | tag JOURNAL-PID1
echo "DONE"
