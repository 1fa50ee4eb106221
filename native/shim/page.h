/* SPDX-License-Identifier: MIT */
/* The page's counter store, safe against a truncated page (page.c). */
#ifndef VMGENID_PAGE_H
#define VMGENID_PAGE_H

#include <stdint.h>

#define VMGENID_PAGE_SIZE 4096
/* The files a page writes: the one at its path, and older ones mapped. */
#define VMGENID_PAGE_FILES 8

struct vmgenid_page;

/* A write into the page's mapping (the counter's store, VMClock's). */
typedef int (*vmgenid_page_write_fn)(void *map, uint32_t value);

struct vmgenid_page *vmgenid_page_new(int fd, void *map);
void vmgenid_page_free(struct vmgenid_page *page);
int vmgenid_page_adopt(struct vmgenid_page *page, int fd, void *map);
int vmgenid_page_forget(struct vmgenid_page *page, void *map);
int vmgenid_page_write(struct vmgenid_page *page, vmgenid_page_write_fn write,
		       uint32_t value, int *result);
int vmgenid_page_store(struct vmgenid_page *page, uint32_t value);

#endif /* VMGENID_PAGE_H */
