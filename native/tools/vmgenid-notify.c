// SPDX-License-Identifier: MIT
/*
 * vmgenid-notify [DEV]
 *
 * The acpid hook's forwarder: tells the daemon "the hardware may have
 * changed" (VMGENID_NOTIFY), so it looks at the GUID now and bumps iff it
 * changed.  Prints one line for acpid's log and exits 0 if the daemon
 * answered (1: it bumped, 0: the GUID was unchanged), 1 on any error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/vmgenid.h>

int main(int argc, char **argv)
{
	const char *dev = argc > 1 ? argv[1] : "/dev/vmgenid";
	int fd, ret;

	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "vmgenid-notify: open %s: %s\n", dev,
			strerror(errno));
		return 1;
	}
	ret = ioctl(fd, VMGENID_NOTIFY);
	if (ret < 0) {
		fprintf(stderr, "vmgenid-notify: VMGENID_NOTIFY: %s\n",
			strerror(errno));
		close(fd);
		return 1;
	}
	printf("vmgenid-notify: %s\n",
	       ret ? "generation changed" : "GUID unchanged");
	close(fd);
	return 0;
}
