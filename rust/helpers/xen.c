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
