/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the rig's XDP programs share (xdp_reflect.bpf.c, xdp_redirect.bpf.c). No kernel or libbpf
 * headers: the section macro, the UAPI context layout and the action values are all they need.
 */
#define SEC(name) __attribute__((section(name), used))

#define XDP_PASS 2
#define XDP_TX 3

struct xdp_md {
	unsigned int data;
	unsigned int data_end;
	unsigned int data_meta;
	unsigned int ingress_ifindex;
	unsigned int rx_queue_index;
	unsigned int egress_ifindex;
};

/*
 * For a frame of EtherType 0x88b5 (the rig's test frames): swaps its source and destination
 * MAC, so that it goes back where it came from, and returns 1. Any other frame: 0, untouched.
 */
static inline int rig_frame_swap(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(long)ctx->data;
	unsigned char *end = (unsigned char *)(long)ctx->data_end;
	unsigned char t;
	int i;

	if (data + 14 > end || data[12] != 0x88 || data[13] != 0xb5)
		return 0;
#pragma unroll
	for (i = 0; i < 6; i++) {
		t = data[i];
		data[i] = data[6 + i];
		data[6 + i] = t;
	}
	return 1;
}
