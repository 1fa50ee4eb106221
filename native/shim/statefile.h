/* SPDX-License-Identifier: MIT */
/* The state file's atomic replace (statefile.c). */
#ifndef VMGENID_STATEFILE_H
#define VMGENID_STATEFILE_H

#include <stdint.h>

struct vmgenid_statefile;

struct vmgenid_statefile *
vmgenid_statefile_open(int dir_fd, const char *name, const char *tmp_name,
		       const char *boot_id);
int vmgenid_statefile_prepare(struct vmgenid_statefile *sf);
int vmgenid_statefile_save(struct vmgenid_statefile *sf, uint32_t counter,
			   const char *guid, int64_t kmsg_seq);
void vmgenid_statefile_set_vmclock(struct vmgenid_statefile *sf, int present,
				   uint64_t counter);
int vmgenid_statefile_stage(struct vmgenid_statefile *sf, uint32_t counter,
			    const char *guid, int64_t kmsg_seq);
void vmgenid_statefile_discard(struct vmgenid_statefile *sf);
void vmgenid_statefile_close(struct vmgenid_statefile *sf);

#endif /* VMGENID_STATEFILE_H */
