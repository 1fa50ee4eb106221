/* SPDX-License-Identifier: MIT */
/* The kernel's file operations the daemon answers in Python (transport.py);
 * native/shim/transport.c answers the others. */

extern "Python" {
	void vmgenid_init_done(void *userdata);
	void vmgenid_open(fuse_req_t req, struct fuse_file_info *fi);
	void vmgenid_ioctl(fuse_req_t req, int cmd, void *arg,
			   struct fuse_file_info *fi, unsigned int flags,
			   const void *in_buf, size_t in_bufsz,
			   size_t out_bufsz);
}
