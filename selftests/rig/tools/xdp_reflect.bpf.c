// SPDX-License-Identifier: GPL-2.0
/*
 * XDP program of the rig's `features` scenario (ft-xdp-tx): sends frames of EtherType 0x88b5
 * (local experimental) back where they came from, source and destination MAC swapped (XDP_TX);
 * passes everything else. Built on the host with clang -target bpf (run.py: bpf_obj), attached
 * natively with
 *   ip link set dev eth0 xdpdrv obj /rig/xdp_reflect.bpf.o sec xdp
 * No headers: nothing but the section names libbpf reads and the UAPI context layout.
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

SEC("xdp")
int xdp_reflect(struct xdp_md *ctx)
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
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
