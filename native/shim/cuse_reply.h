/* SPDX-License-Identifier: MIT */
/* libfuse's replies, as the publisher calls them (cuse_reply.c). */
#ifndef VMGENID_CUSE_REPLY_H
#define VMGENID_CUSE_REPLY_H

#include "publisher.h"

const struct vmgenid_reply_ops *vmgenid_cuse_replies(void);

#endif /* VMGENID_CUSE_REPLY_H */
