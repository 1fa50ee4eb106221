/* SPDX-License-Identifier: MIT */
/* The GUID poll thread (guidpoll.c). */
#ifndef VMGENID_GUIDPOLL_H
#define VMGENID_GUIDPOLL_H

#include <stdint.h>

struct vmgenid_guid_poll;
struct vmgenid_publisher;

struct vmgenid_guid_poll *vmgenid_guid_poll_start(const void *guid,
						   unsigned int interval_ms,
						   int event_fd, int kmsg_fd,
						   int kmsg_tells);
struct vmgenid_guid_poll *vmgenid_kmsg_poll_start(struct vmgenid_publisher *pub,
						  int64_t applied,
						  int event_fd, int kmsg_fd);
void vmgenid_guid_poll_publish_to(struct vmgenid_guid_poll *poll,
				  struct vmgenid_publisher *pub);
unsigned int vmgenid_guid_poll_take_vmfork(struct vmgenid_guid_poll *poll);
int64_t vmgenid_guid_poll_kmsg_seq(struct vmgenid_guid_poll *poll);
int vmgenid_guid_poll_kmsg_error(struct vmgenid_guid_poll *poll);
void vmgenid_guid_poll_stop(struct vmgenid_guid_poll *poll);

#endif /* VMGENID_GUIDPOLL_H */
