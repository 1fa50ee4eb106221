/*
 * Readers map the page and load the counter without any lock: it must
 * change with one aligned 32-bit atomic store, never byte by byte.
 */
void vmgenid_page_store(void *page, uint32_t value)
{
	__atomic_store_n((uint32_t *)page, value, __ATOMIC_SEQ_CST);
}

uint32_t vmgenid_page_load(const void *page)
{
	return __atomic_load_n((const uint32_t *)page, __ATOMIC_SEQ_CST);
}
