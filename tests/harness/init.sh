#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# /init of the test guest: overlay a tmpfs on the host root (9p, read-only),
# run the harness's script (vmgenid.script= on the kernel command line)
# in it, print its exit code for the harness and power off.
#
# With vmgenid.root=block (guests that are saved and restored: 9p blocks
# migration) the root is two read-only squashfs disks instead, the system
# on /dev/vda under the repo on /dev/vdb (rootimage.py), and the script
# comes from fw_cfg (opt/vmgenid/script).
#
# With vmgenid.init=systemd as well (block root only), systemd becomes
# init instead (switch_root) and boots vmgenid-guest.target: basic.target
# plus a unit that runs the script on the console, prints the markers and
# powers off (the script's own job: systemd's units, not this /init).
#
# Any failure here powers off without the exit marker: the harness fails.

/bin/busybox --install -s /bin
export PATH=/bin

die() {
	echo "guest init: $*"
	poweroff -f
}

# The guest kernel's modules (modprobe, systemd-modules-load), the boot
# target and the script's unit in /run (tmpfs), then systemd as PID 1.
start_systemd() {
	release=$(uname -r)
	mkdir -p /newroot/usr/lib/modules
	cp -a "$moddir" /newroot/usr/lib/modules/ &&
		chroot /newroot /sbin/depmod -a "$release" 2>/dev/null ||
		die "cannot install the modules for modprobe"
	# A container's policy-rc.d (exit 101: start no service) would leak
	# from the host root; a booted system has none.
	rm -f /newroot/usr/sbin/policy-rc.d
	# Debian's tmpfiles.d/tmp.conf empties /tmp at boot ("D /tmp"), and
	# the checkout may live there (CI clones anywhere): keep it, as the
	# busybox init does.
	mkdir -p /newroot/etc/tmpfiles.d
	echo "d /tmp 1777 root root -" > /newroot/etc/tmpfiles.d/tmp.conf
	units=/newroot/run/systemd/system
	mkdir -p $units
	cat > $units/vmgenid-guest.target <<-EOF
	[Unit]
	Description=vmgenid test guest: basic.target and the harness script
	Requires=basic.target
	Wants=vmgenid-script.service
	After=basic.target
	AllowIsolate=yes
	EOF
	# Type=exec: the boot transaction ends once the script started, so
	# the script may wait for it (systemctl is-system-running --wait).
	# "$$": systemd's literal "$" (the line is joined: "\" newline).
	cat > $units/vmgenid-script.service <<-EOF
	[Unit]
	Description=vmgenid harness script $script
	After=basic.target
	[Service]
	Type=exec
	StandardInput=null
	StandardOutput=tty
	StandardError=inherit
	TTYPath=/dev/console
	ExecStart=/bin/sh -c 'echo @@VMGENID-GUEST-START@@; /bin/sh $script; \
		echo "@@VMGENID-GUEST-EXIT \$\$?@@"; systemctl poweroff --force --force'
	EOF
	exec switch_root /newroot /lib/systemd/systemd --system \
		--unit=vmgenid-guest.target --show-status=error
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec < /dev/null       # the command gets no input from the console

moddir=/lib/modules/$(uname -r)
while read -r module; do
	insmod "$moddir/$module.ko" || die "cannot load $module"
done < "$moddir/load.order"

script=
root=9p
init=script
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	vmgenid.script=*) script=${arg#*=} ;;
	vmgenid.root=*) root=${arg#*=} ;;
	vmgenid.init=*) init=${arg#*=} ;;
	esac
done
case "$root/$init" in
*/script|block/systemd) ;;
*) die "vmgenid.init=$init with vmgenid.root=$root: not supported" ;;
esac

lower=/host
case "$root" in
9p)
	[ -n "$script" ] || die "no vmgenid.script= on the kernel command line"
	# msize: the largest 6.1's virtio transport takes (6.12 takes more).
	mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose \
		hostroot /host || die "cannot mount the host root"
	;;
block)
	fwcfg=/sys/firmware/qemu_fw_cfg/by_name/opt/vmgenid/script/raw
	[ -r "$fwcfg" ] || die "no opt/vmgenid/script in fw_cfg"
	cp "$fwcfg" /script || die "cannot read $fwcfg"
	mkdir -p /repo
	n=0
	while [ ! -b /dev/vdb ] && [ $n -lt 100 ]; do
		usleep 100000
		n=$((n + 1))
	done
	mount -t squashfs -o ro /dev/vda /host || die "cannot mount /dev/vda"
	mount -t squashfs -o ro /dev/vdb /repo || die "cannot mount /dev/vdb"
	lower=/repo:/host
	;;
*)
	die "vmgenid.root=$root: not 9p or block"
	;;
esac
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=$lower,upperdir=/rw/upper,workdir=/rw/work \
	overlay /newroot || die "cannot mount the overlay"

for dir in proc sys dev; do
	mount --move /$dir /newroot/$dir
done
# No fresh tmpfs on /tmp: the checkout may live there (CI clones anywhere),
# and the overlay already makes /tmp writable without touching the host.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run
mkdir -p /newroot/dev/shm /newroot/dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /newroot/dev/pts
ip link set lo up
if [ "$root" = block ]; then
	script=/run/vmgenid-script.sh
	cp /script /newroot$script || die "cannot copy the script"
fi
if [ "$init" = systemd ]; then
	start_systemd
fi

# Put the new root on top of / (as switch_root does) before entering it:
# a plain chroot would make unshare(CLONE_NEWUSER) fail with EPERM. /init
# keeps the initramfs as its own root, for poweroff below.
cd /newroot
mount --move . /

echo "@@VMGENID-GUEST-START@@"
env -i chroot . /bin/sh "$script"
echo "@@VMGENID-GUEST-EXIT $?@@"
sync
poweroff -f
