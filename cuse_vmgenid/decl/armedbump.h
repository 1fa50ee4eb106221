/* SPDX-License-Identifier: MIT */
/* The armed bump: the next hardware generation, ready for the GUID poll
 * thread to publish (decl/armedbump.c). */

struct vmgenid_armed_bump;
struct vmgenid_armed_read;

/* What a fired bump did, for the daemon to apply to its state machine. */
struct vmgenid_fired_bump {
	uint32_t counter;		/* published in the page and replies */
	unsigned char guid[16];		/* the GUID it fired on */
	int state_err;			/* the state file's commit: 0 or -errno */
	int page_result;		/* vmgenid_page_store()'s */
	unsigned int replies;		/* reads it answered */
	int kernel_log;			/* the kernel's VM fork line woke it */
	/* From the thread's wake-up, in us: where the time went. */
	unsigned int fire_us, committed_us, replied_us;
};

typedef int (*vmgenid_reply_buf_fn)(fuse_req_t req, const char *buf,
				    size_t size);

struct vmgenid_armed_bump *
vmgenid_armed_bump_new(struct vmgenid_state_file *state,
		       struct vmgenid_page *page, struct vmgenid_page *vmclock,
		       vmgenid_reply_buf_fn reply);
void vmgenid_armed_bump_arm(struct vmgenid_armed_bump *ab, uint32_t counter,
			    const void *guid);
const int *vmgenid_armed_bump_fired_flag(struct vmgenid_armed_bump *ab);
int vmgenid_armed_bump_take(struct vmgenid_armed_bump *ab,
			    struct vmgenid_fired_bump *out);
int vmgenid_armed_bump_fire(struct vmgenid_armed_bump *ab, const void *guid,
			    int kernel_log, const struct timespec *woke);
struct vmgenid_armed_read *
vmgenid_armed_read_add(struct vmgenid_armed_bump *ab, fuse_req_t req);
int vmgenid_armed_read_take(struct vmgenid_armed_bump *ab,
			    struct vmgenid_armed_read *read);
void vmgenid_armed_bump_free(struct vmgenid_armed_bump *ab);
