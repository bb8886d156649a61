// SPDX-License-Identifier: GPL-2.0
/*
 * XDP program of the rig's `features` scenario (ft-xdp-*): drops every packet. Built on the host
 * with clang -target bpf (run.py: bpf_obj), attached natively with
 *   ip link set dev eth0 xdpdrv obj /rig/xdp_drop.bpf.o sec xdp
 * No headers: nothing but the section names libbpf reads.
 */
#define SEC(name) __attribute__((section(name), used))

SEC("xdp")
int xdp_drop(void *ctx)
{
	return 1; /* XDP_DROP */
}

char _license[] SEC("license") = "GPL";
