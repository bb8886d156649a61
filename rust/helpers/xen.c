// SPDX-License-Identifier: GPL-2.0

#include <asm/barrier.h>

/*
 * Barriers for memory shared with another (virtual) machine, as used by the Xen shared-ring
 * protocol. Unlike the smp_*() barriers they do not degrade to compiler barriers on !SMP kernels.
 */

__rust_helper void rust_helper_virt_mb(void)
{
	virt_mb();
}

__rust_helper void rust_helper_virt_rmb(void)
{
	virt_rmb();
}

__rust_helper void rust_helper_virt_wmb(void)
{
	virt_wmb();
}

#if IS_ENABLED(CONFIG_XEN)

#include <linux/mm.h>
#include <xen/page.h>
#include <xen/xen.h>

__rust_helper bool rust_helper_xen_domain(void)
{
	return xen_domain();
}

__rust_helper unsigned long rust_helper_xen_page_to_gfn(struct page *page)
{
	return xen_page_to_gfn(page);
}

__rust_helper unsigned long rust_helper_virt_to_gfn(const void *v)
{
	return virt_to_gfn(v);
}

__rust_helper bool rust_helper_virt_addr_valid(const void *kaddr)
{
	return virt_addr_valid(kaddr);
}

#include <linux/preempt.h>
#include <xen/grant_table.h>

/* The grant a page mapped from another domain was mapped with, or NULL for a local page. */
__rust_helper struct xen_page_foreign *rust_helper_xen_page_foreign(struct page *page)
{
	return xen_page_foreign(page);
}

__rust_helper void rust_helper_gnttab_set_map_op(struct gnttab_map_grant_ref *map, phys_addr_t addr,
						 uint32_t flags, grant_ref_t ref, domid_t domid)
{
	gnttab_set_map_op(map, addr, flags, ref, domid);
}

__rust_helper void rust_helper_gnttab_set_unmap_op(struct gnttab_unmap_grant_ref *unmap,
						   phys_addr_t addr, uint32_t flags,
						   grant_handle_t handle)
{
	gnttab_set_unmap_op(unmap, addr, flags, handle);
}

/* The address of a page in the kernel's linear mapping, as netback's idx_to_kaddr(). */
__rust_helper unsigned long rust_helper_pfn_to_kaddr(unsigned long pfn)
{
	return (unsigned long)pfn_to_kaddr(pfn);
}

__rust_helper unsigned long rust_helper_page_to_pfn(struct page *page)
{
	return page_to_pfn(page);
}

__rust_helper bool rust_helper_in_task(void)
{
	return in_task();
}

#endif /* CONFIG_XEN */
