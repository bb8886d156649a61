// SPDX-License-Identifier: GPL-2.0
/*
 * tlbbench: TLB-heavy microbenchmark for the PV MMU patches (issue 6, patches/README.md 9.2).
 *
 *   tlbbench [-p PAGES] [-k EVERY] [-s SECONDS]
 *
 * user:   a pointer chase over PAGES 4 KiB pages (one cache line per page, random order), with a
 *         getppid() system call every EVERY accesses: every system call of a 64-bit PV guest
 *         switches page tables (user and kernel halves are separate), so user TLB entries survive
 *         it only if they are global.
 * kernel: a system-call loop that walks many kernel text and data pages: read() of small chunks
 *         from /dev/zero, stat() of a path, a UDP sendto()/recv() pair on loopback. Measures the
 *         kernel's iTLB/dTLB reach (2 MiB kernel text and rodata mappings).
 * direct: pread() of 64 bytes at a random page of a PAGES-page memfd (shmem page cache): the
 *         kernel copies from the page's direct-map address, so this walks the direct map's dTLB
 *         reach (2 MiB direct-map mappings, xen_superpages=all, patches/0104).
 *
 * Prints one line: TLBBENCH {"user_ns": .., "kernel_ns": .., ...} (nanoseconds per access and per
 * loop iteration). Under QEMU TCG the TLB is QEMU's soft TLB, so expect ratios near 1.0 there.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* ns per access of a random cyclic pointer chase over npages pages. */
static double user_chase(size_t npages, long every, double secs, unsigned long *sink)
{
	char *mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	size_t *order = malloc(npages * sizeof(*order));
	unsigned long accesses = 0;
	double t0, t;
	void **p;
	size_t i;

	if (mem == MAP_FAILED || !order) {
		perror("tlbbench: memory");
		exit(1);
	}
	for (i = 0; i < npages; i++)
		order[i] = i;
	for (i = npages - 1; i > 0; i--) {
		size_t j = next() % (i + 1), x = order[i];

		order[i] = order[j];
		order[j] = x;
	}
	/* Spread the lines over the page so that the cache sets differ too. */
	for (i = 0; i < npages; i++) {
		size_t a = order[i], b = order[(i + 1) % npages];

		*(void **)(mem + a * PAGE + (a % 64) * 64) = mem + b * PAGE + (b % 64) * 64;
	}
	free(order);
	p = (void **)mem;	/* page 0, line 0: on the cycle */
	t0 = now();
	do {
		long k;

		for (k = 0; k < every; k++)
			p = *p;
		accesses += every;
		*sink += getppid();
	} while ((t = now()) - t0 < secs);
	*sink += (unsigned long)p;
	munmap(mem, npages * PAGE);
	return (t - t0) * 1e9 / accesses;
}

/* ns per iteration of a loop of system calls over many kernel paths. */
static double kernel_loop(double secs, unsigned long *sink)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int zero = open("/dev/zero", O_RDONLY);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	unsigned long iters = 0;
	char buf[256];
	struct stat st;
	double t0, t;

	if (zero < 0 || s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(s, (struct sockaddr *)&a, &alen)) {
		perror("tlbbench: setup");
		exit(1);
	}
	t0 = now();
	do {
		int i;

		for (i = 0; i < 64; i++) {
			if (read(zero, buf, sizeof(buf)) != sizeof(buf) || stat("/proc/self/stat", &st) ||
			    sendto(s, buf, 64, 0, (struct sockaddr *)&a, sizeof(a)) != 64 ||
			    recv(s, buf, sizeof(buf), 0) != 64) {
				perror("tlbbench: kernel loop");
				exit(1);
			}
			*sink += st.st_ino + (unsigned char)buf[0];
		}
		iters += 64;
	} while ((t = now()) - t0 < secs);
	close(s);
	close(zero);
	return (t - t0) * 1e9 / iters;
}

/* ns per pread() of 64 bytes from a random page of an npages-page shmem file. */
static double direct_reads(size_t npages, double secs, unsigned long *sink)
{
	int fd = syscall(SYS_memfd_create, "tlbbench", 0);
	unsigned long reads = 0;
	char buf[PAGE];
	double t0, t;
	size_t i;

	if (fd < 0 || ftruncate(fd, (off_t)npages * PAGE)) {
		perror("tlbbench: memfd");
		exit(1);
	}
	memset(buf, 0x5a, sizeof(buf));
	for (i = 0; i < npages; i++)
		if (pwrite(fd, buf, PAGE, (off_t)i * PAGE) != PAGE) {
			perror("tlbbench: memfd fill");
			exit(1);
		}
	t0 = now();
	do {
		int k;

		for (k = 0; k < 256; k++) {
			uint64_t r = next();

			if (pread(fd, buf, 64, (off_t)(r % npages) * PAGE + ((r >> 32) % 64) * 64) != 64) {
				perror("tlbbench: pread");
				exit(1);
			}
			*sink += (unsigned char)buf[0];
		}
		reads += 256;
	} while ((t = now()) - t0 < secs);
	close(fd);
	return (t - t0) * 1e9 / reads;
}

int main(int argc, char **argv)
{
	size_t pages = 16384;		/* 64 MiB: far beyond any STLB */
	long every = 256;
	double secs = 3;
	unsigned long sink = 0;
	double u, k, d;
	int c;

	while ((c = getopt(argc, argv, "p:k:s:")) != -1) {
		switch (c) {
		case 'p': pages = strtoul(optarg, NULL, 0); break;
		case 'k': every = strtol(optarg, NULL, 0); break;
		case 's': secs = strtod(optarg, NULL); break;
		default:
			fprintf(stderr, "usage: %s [-p PAGES] [-k EVERY] [-s SECONDS]\n", argv[0]);
			return 2;
		}
	}
	if (pages < 2 || every < 1 || secs <= 0) {
		fprintf(stderr, "tlbbench: bad arguments\n");
		return 2;
	}
	u = user_chase(pages, every, secs, &sink);
	k = kernel_loop(secs, &sink);
	d = direct_reads(pages, secs, &sink);
	printf("TLBBENCH {\"user_ns\": %.3f, \"kernel_ns\": %.3f, \"direct_ns\": %.3f, \"pages\": %zu, \"every\": %ld, \"secs\": %.1f, \"sink\": %lu}\n",
	       u, k, d, pages, every, secs, sink & 1);
	return 0;
}
