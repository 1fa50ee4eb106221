/* SPDX-License-Identifier: MIT */
/* libfuse's replies, as the publisher calls them (cuse_reply.c). */
#ifndef VMGENID_CUSE_REPLY_H
#define VMGENID_CUSE_REPLY_H

#include "publisher.h"

const struct vmgenid_reply_ops *vmgenid_cuse_replies(void);
int vmgenid_cuse_reply_failed(void);
unsigned int vmgenid_cuse_reply_failures(int *last_err);

#endif /* VMGENID_CUSE_REPLY_H */
