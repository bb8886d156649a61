// SPDX-License-Identifier: GPL-2.0
/*
 * XDP program of the rig's `features` scenario (ft-xdp-redirect): frames of EtherType 0x88b5 get
 * their MACs swapped and are redirected (bpf_redirect, XDP_REDIRECT) to the interface they came
 * in on, which sends them through its ndo_xdp_xmit; everything else passes. Built like
 * xdp_reflect.bpf.c, attached with
 *   ip link set dev eth0 xdpdrv obj /rig/xdp_redirect.bpf.o sec xdp
 */
#include "xdp_rig.h"

/* BPF_FUNC_redirect */
static long (*bpf_redirect)(unsigned int ifindex, unsigned long long flags) = (void *)23;

SEC("xdp")
int xdp_redirect_back(struct xdp_md *ctx)
{
	return rig_frame_swap(ctx) ? bpf_redirect(ctx->ingress_ifindex, 0) : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
