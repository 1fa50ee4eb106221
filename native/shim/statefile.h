/* SPDX-License-Identifier: MIT */
/* The state file's atomic replace (statefile.c). */
#ifndef VMGENID_STATEFILE_H
#define VMGENID_STATEFILE_H

#include <stdint.h>

struct vmgenid_state_file;

struct vmgenid_state_file *vmgenid_state_open(int dir_fd, const char *name,
					      const char *tmp_name,
					      const char *boot_id);
int vmgenid_state_prepare(struct vmgenid_state_file *sf);
int vmgenid_state_save(struct vmgenid_state_file *sf, uint32_t counter,
		       const char *guid, int64_t kmsg_seq);
void vmgenid_state_set_vmclock(struct vmgenid_state_file *sf, int present,
			       uint64_t counter);
int vmgenid_state_stage(struct vmgenid_state_file *sf, uint32_t counter,
			const char *guid, int64_t kmsg_seq);
void vmgenid_state_close(struct vmgenid_state_file *sf);

#endif /* VMGENID_STATEFILE_H */
