// SPDX-License-Identifier: GPL-2.0

#include <linux/mm.h>
#include <linux/skbuff.h>
#include <net/page_pool/helpers.h>

#ifdef CONFIG_PAGE_POOL

__rust_helper void rust_helper_page_pool_put_full_page(struct page_pool *pool, struct page *page,
							bool allow_direct)
{
	page_pool_put_full_page(pool, page, allow_direct);
}

__rust_helper void rust_helper_skb_mark_for_recycle(struct sk_buff *skb)
{
	skb_mark_for_recycle(skb);
}

__rust_helper void rust_helper_put_page(struct page *page)
{
	put_page(page);
}

#endif
