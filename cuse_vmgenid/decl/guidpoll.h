/* SPDX-License-Identifier: MIT */
/* The GUID poller thread (decl/guidpoll.c). */

struct vmgenid_guid_poll;
struct vmgenid_guid_poll *vmgenid_guid_poll_start(const void *guid,
						   unsigned int interval_ms,
						   int event_fd, int rng_fd,
						   int kmsg_fd);
void vmgenid_guid_poll_fire(struct vmgenid_guid_poll *poll,
			    struct vmgenid_armed_bump *armed);
unsigned int vmgenid_guid_poll_take_vmfork(struct vmgenid_guid_poll *poll);
int vmgenid_guid_poll_reseeded(struct vmgenid_guid_poll *poll,
			       const void *guid);
void vmgenid_guid_poll_stop(struct vmgenid_guid_poll *poll);
