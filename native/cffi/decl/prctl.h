/* SPDX-License-Identifier: MIT */
/* prctl(2): each hook the child subreaper of what it starts, so a timeout
 * finds and kills all of it (cuse_vmgenid/service/hooks.py).  glibc declares it
 * variadic; these are the five words the kernel reads. */

int prctl(int option, unsigned long arg2, unsigned long arg3,
	  unsigned long arg4, unsigned long arg5);

#define PR_SET_CHILD_SUBREAPER ...
