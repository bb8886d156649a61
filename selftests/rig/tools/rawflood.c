// SPDX-License-Identifier: GPL-2.0
/*
 * rawflood: raw Ethernet frames through a device as fast as dom0 can send them (the hostile
 * frontend case rx-stall, XSA-392: a frontend that takes nothing while dom0 floods its vif).
 *
 *   rawflood IFNAME DST_MAC SRC_MAC SIZE MIN_SECS MAX_SECS VOLUME
 *
 * Sends SIZE-byte frames of ethertype 0x88b5 (local experimental) from SRC_MAC to DST_MAC on
 * IFNAME, BATCH per sendmmsg() and without blocking, for at least MIN_SECS seconds and until
 * VOLUME bytes went, at most MAX_SECS seconds. One system call per frame (as the rig's Python
 * did) bounded the flood by dom0's speed under TCG, where each call traps into Xen: 3 MB in 8 s
 * on a loaded host. The socket's send buffer is forced to 256 MiB so that only the path's own
 * bounds (the backend's queue, the qdisc) limit what piles up.
 *
 * Prints one line: RAWFLOOD {"frames": N, "bytes": B, "secs": S, "calls": C, "errors": E,
 * "first_error": "..."}; exit code 0 unless the socket could not be set up.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64
#define ETH_P_RIG 0x88b5

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int parse_mac(const char *s, unsigned char *mac)
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3],
		      &mac[4], &mac[5]) == 6 ? 0 : -1;
}

int main(int argc, char **argv)
{
	static unsigned char frame[ETH_FRAME_LEN];
	struct mmsghdr msgs[BATCH];
	struct iovec iov = { frame, 0 };
	struct sockaddr_ll sll = { 0 };
	double t0, secs, min_secs, max_secs, volume;
	unsigned long long frames = 0, bytes = 0, calls = 0, errors = 0;
	int first_error = 0, sndbuf = 256 << 20, s, i;
	size_t size;

	if (argc != 8) {
		fprintf(stderr, "usage: %s IFNAME DST_MAC SRC_MAC SIZE MIN_SECS MAX_SECS VOLUME\n", argv[0]);
		return 2;
	}
	size = strtoul(argv[4], NULL, 0);
	min_secs = atof(argv[5]);
	max_secs = atof(argv[6]);
	volume = atof(argv[7]);
	if (size < ETH_ZLEN || size > ETH_FRAME_LEN || parse_mac(argv[2], frame) ||
	    parse_mac(argv[3], frame + ETH_ALEN)) {
		fprintf(stderr, "rawflood: bad size or MAC\n");
		return 2;
	}
	frame[12] = ETH_P_RIG >> 8;
	frame[13] = ETH_P_RIG & 0xff;
	memcpy(frame + ETH_HLEN, "rig-flood", 9);
	iov.iov_len = size;

	s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_RIG));
	if (s < 0) {
		perror("rawflood: socket");
		return 1;
	}
	if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)))
		perror("rawflood: SO_SNDBUFFORCE");
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_RIG);
	sll.sll_ifindex = if_nametoindex(argv[1]);
	if (!sll.sll_ifindex || bind(s, (struct sockaddr *)&sll, sizeof(sll))) {
		perror("rawflood: bind");
		return 1;
	}
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}

	t0 = now();
	for (;;) {
		int n;

		secs = now() - t0;
		if (secs >= max_secs || (secs >= min_secs && bytes >= volume))
			break;
		n = sendmmsg(s, msgs, BATCH, MSG_DONTWAIT);
		calls++;
		if (n < 0) {
			errors++;
			if (!first_error)
				first_error = errno;
			continue;
		}
		frames += n;
		bytes += (unsigned long long)n * size;
	}
	printf("RAWFLOOD {\"frames\": %llu, \"bytes\": %llu, \"secs\": %.2f, \"calls\": %llu, "
	       "\"errors\": %llu, \"first_error\": \"%s\"}\n", frames, bytes, secs, calls, errors,
	       first_error ? strerror(first_error) : "");
	return 0;
}
