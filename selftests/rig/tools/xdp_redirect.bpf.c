// SPDX-License-Identifier: GPL-2.0
/*
 * XDP program of the rig's `features` scenario (ft-xdp-redirect): frames of EtherType 0x88b5 get
 * their MACs swapped and are redirected (bpf_redirect, XDP_REDIRECT) to the interface they came
 * in on, which sends them through its ndo_xdp_xmit; everything else passes. Built like
 * xdp_reflect.bpf.c, attached with
 *   ip link set dev eth0 xdpdrv obj /rig/xdp_redirect.bpf.o sec xdp
 */
#define SEC(name) __attribute__((section(name), used))

#define XDP_PASS 2

struct xdp_md {
	unsigned int data;
	unsigned int data_end;
	unsigned int data_meta;
	unsigned int ingress_ifindex;
	unsigned int rx_queue_index;
	unsigned int egress_ifindex;
};

/* BPF_FUNC_redirect */
static long (*bpf_redirect)(unsigned int ifindex, unsigned long long flags) = (void *)23;

SEC("xdp")
int xdp_redirect_back(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(long)ctx->data;
	unsigned char *end = (unsigned char *)(long)ctx->data_end;
	unsigned char t;
	int i;

	if (data + 14 > end || data[12] != 0x88 || data[13] != 0xb5)
		return XDP_PASS;
#pragma unroll
	for (i = 0; i < 6; i++) {
		t = data[i];
		data[i] = data[6 + i];
		data[6 + i] = t;
	}
	return bpf_redirect(ctx->ingress_ifindex, 0);
}

char _license[] SEC("license") = "GPL";
