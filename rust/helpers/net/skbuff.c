// SPDX-License-Identifier: GPL-2.0

#include <linux/mm.h>
#include <linux/skbuff.h>

#ifdef CONFIG_NET

__rust_helper struct sk_buff *rust_helper_alloc_skb(unsigned int size, gfp_t priority)
{
	return alloc_skb(size, priority);
}

__rust_helper struct skb_shared_info *rust_helper_skb_shinfo(struct sk_buff *skb)
{
	return skb_shinfo(skb);
}

__rust_helper unsigned int rust_helper_skb_headlen(const struct sk_buff *skb)
{
	return skb_headlen(skb);
}

__rust_helper void rust_helper_skb_tx_timestamp(struct sk_buff *skb)
{
	skb_tx_timestamp(skb);
}

__rust_helper unsigned int rust_helper_skb_headroom(const struct sk_buff *skb)
{
	return skb_headroom(skb);
}

__rust_helper int rust_helper_skb_tailroom(const struct sk_buff *skb)
{
	return skb_tailroom(skb);
}

__rust_helper int rust_helper_skb_cloned(const struct sk_buff *skb)
{
	return skb_cloned(skb);
}

__rust_helper int rust_helper_skb_header_cloned(const struct sk_buff *skb)
{
	return skb_header_cloned(skb);
}

__rust_helper void rust_helper_skb_reserve(struct sk_buff *skb, int len)
{
	skb_reserve(skb, len);
}

__rust_helper bool rust_helper_pskb_may_pull(struct sk_buff *skb, unsigned int len)
{
	return pskb_may_pull(skb, len);
}

__rust_helper int rust_helper_skb_linearize(struct sk_buff *skb)
{
	return skb_linearize(skb);
}

__rust_helper struct page *rust_helper_skb_frag_page(const skb_frag_t *frag)
{
	return skb_frag_page(frag);
}

__rust_helper unsigned int rust_helper_skb_frag_size(const skb_frag_t *frag)
{
	return skb_frag_size(frag);
}

__rust_helper unsigned int rust_helper_skb_frag_off(const skb_frag_t *frag)
{
	return skb_frag_off(frag);
}

__rust_helper void rust_helper_skb_add_rx_frag(struct sk_buff *skb, int i,
					       struct page *page, int off,
					       int size, unsigned int truesize)
{
	skb_add_rx_frag(skb, i, page, off, size, truesize);
}

__rust_helper __u32 rust_helper_skb_get_hash(struct sk_buff *skb)
{
	return skb_get_hash(skb);
}

__rust_helper void rust_helper_skb_set_hash(struct sk_buff *skb, __u32 hash,
					    enum pkt_hash_types type)
{
	skb_set_hash(skb, hash, type);
}

__rust_helper int rust_helper_skb_checksum_start_offset(const struct sk_buff *skb)
{
	return skb_checksum_start_offset(skb);
}

__rust_helper bool rust_helper_skb_is_gso(const struct sk_buff *skb)
{
	return skb_is_gso(skb);
}

__rust_helper void rust_helper_skb_reset_mac_header(struct sk_buff *skb)
{
	skb_reset_mac_header(skb);
}

__rust_helper void rust_helper_skb_reset_network_header(struct sk_buff *skb)
{
	skb_reset_network_header(skb);
}

__rust_helper void rust_helper_skb_reset_transport_header(struct sk_buff *skb)
{
	skb_reset_transport_header(skb);
}

__rust_helper int rust_helper_skb_network_offset(const struct sk_buff *skb)
{
	return skb_network_offset(skb);
}

__rust_helper int rust_helper_skb_transport_offset(const struct sk_buff *skb)
{
	return skb_transport_offset(skb);
}

__rust_helper u16 rust_helper_skb_get_queue_mapping(const struct sk_buff *skb)
{
	return skb_get_queue_mapping(skb);
}

__rust_helper void rust_helper_skb_set_queue_mapping(struct sk_buff *skb, u16 queue_mapping)
{
	skb_set_queue_mapping(skb, queue_mapping);
}

__rust_helper struct sk_buff *rust_helper_netdev_alloc_skb(struct net_device *dev,
							   unsigned int length)
{
	return netdev_alloc_skb(dev, length);
}

__rust_helper struct page *rust_helper_virt_to_page(const void *kaddr)
{
	return virt_to_page(kaddr);
}

__rust_helper void rust_helper_get_page(struct page *page)
{
	get_page(page);
}

__rust_helper void rust_helper_skb_zcopy_init(struct sk_buff *skb, struct ubuf_info *uarg)
{
	skb_zcopy_init(skb, uarg);
}

__rust_helper bool rust_helper_skb_zcopy(struct sk_buff *skb)
{
	return skb_zcopy(skb) != NULL;
}

__rust_helper int rust_helper_skb_orphan_frags(struct sk_buff *skb, gfp_t gfp_mask)
{
	return skb_orphan_frags(skb, gfp_mask);
}

__rust_helper int rust_helper_page_count(const struct page *page)
{
	return page_count(page);
}

#endif
