/* The page's counter store, safe against a truncated page (decl/page.c). */

struct vmgenid_page;
struct vmgenid_page *vmgenid_page_new(int fd, void *map);
void vmgenid_page_free(struct vmgenid_page *page);
int vmgenid_page_store(struct vmgenid_page *page, uint32_t value);
