// SPDX-License-Identifier: GPL-2.0
/*
 * XDP program of the rig's `features` scenario (ft-xdp-tx): sends frames of EtherType 0x88b5
 * (local experimental) back where they came from, source and destination MAC swapped (XDP_TX);
 * passes everything else. Built on the host with clang -target bpf (run.py: bpf_obj), attached
 * natively with
 *   ip link set dev eth0 xdpdrv obj /rig/xdp_reflect.bpf.o sec xdp
 */
#include "xdp_rig.h"

SEC("xdp")
int xdp_reflect(struct xdp_md *ctx)
{
	return rig_frame_swap(ctx) ? XDP_TX : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
