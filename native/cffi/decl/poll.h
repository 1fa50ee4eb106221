/* SPDX-License-Identifier: MIT */
/* poll(2)'s array, which the daemon hands to native/shim/session.c. */

struct pollfd {
	int fd;
	short events;
	short revents;
};
