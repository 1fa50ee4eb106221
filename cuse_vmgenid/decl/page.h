/* The page's counter store (decl/page.c). */

void vmgenid_page_store(void *page, uint32_t value);
uint32_t vmgenid_page_load(const void *page);
