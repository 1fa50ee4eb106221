/* SPDX-License-Identifier: MIT */
/* The kernel's file operations the daemon answers in Python (transport.py),
 * each given the handle of the Python transport (ffi.new_handle());
 * native/shim/transport.c answers the others. */

extern "Python" {
	void vmgenid_init_done(void *daemon);
	void vmgenid_open(void *daemon, fuse_req_t req,
			  struct fuse_file_info *fi);
	void vmgenid_ioctl(void *daemon, fuse_req_t req, unsigned int cmd,
			   struct fuse_file_info *fi, const void *in_buf,
			   size_t in_bufsz);
}
