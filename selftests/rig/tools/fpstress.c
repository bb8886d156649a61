// SPDX-License-Identifier: GPL-2.0
/*
 * fpstress: check that user FPU/SSE/AVX register state survives context switches.
 *
 *   fpstress [-p procs] [-t seconds] [-m sse|avx]
 *
 * Each process loads a pattern unique to (process, round) into xmm0-15 (or ymm0-15 with -m avx),
 * yields/spins so that the kernel and the hypervisor switch context, stores the registers back
 * and compares. Any difference is a corrupted register file (e.g. a broken XSAVE/XRSTOR or lazy
 * FPU (#NM) emulation under TCG). Prints "fpstress: rounds=N errors=E" per process; exit 1 on errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <unistd.h>
#include <sched.h>
#include <time.h>
#include <sys/wait.h>

static int avx;

static inline void load_store(const uint8_t *in, uint8_t *out)
{
	if (avx) {
#define L(n) "vmovdqu " #n "*32(%0), %%ymm" #n "\n\t"
#define S(n) "vmovdqu %%ymm" #n ", " #n "*32(%1)\n\t"
		__asm__ volatile(L(0) L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8) L(9) L(10) L(11) L(12) L(13) L(14) L(15)
				 "mov $2000, %%ecx\n1:\n\tpause\n\tdec %%ecx\n\tjnz 1b\n\t"
				 S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9) S(10) S(11) S(12) S(13) S(14) S(15)
				 : : "r"(in), "r"(out) : "rcx", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
				   "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
#undef L
#undef S
	} else {
#define L(n) "movdqu " #n "*16(%0), %%xmm" #n "\n\t"
#define S(n) "movdqu %%xmm" #n ", " #n "*16(%1)\n\t"
		__asm__ volatile(L(0) L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8) L(9) L(10) L(11) L(12) L(13) L(14) L(15)
				 "mov $2000, %%ecx\n1:\n\tpause\n\tdec %%ecx\n\tjnz 1b\n\t"
				 S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9) S(10) S(11) S(12) S(13) S(14) S(15)
				 : : "r"(in), "r"(out) : "rcx", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
				   "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
#undef L
#undef S
	}
}

static int worker(int id, double secs)
{
	uint8_t in[512] __attribute__((aligned(32))), out[512] __attribute__((aligned(32)));
	size_t n = avx ? 512 : 256;
	struct timespec t0, t;
	unsigned long rounds = 0, errors = 0;
	uint64_t x = 0x9e3779b97f4a7c15ULL * (id + 1);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		for (size_t i = 0; i < n; i += 8) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			memcpy(in + i, &x, 8);
		}
		memset(out, 0, sizeof(out));
		load_store(in, out);
		if (memcmp(in, out, n)) {
			errors++;
			if (errors <= 5) {
				for (size_t i = 0; i < n; i++)
					if (in[i] != out[i]) {
						printf("fpstress[%d]: round %lu: reg %zu byte %zu: want %02x got %02x\n",
						       id, rounds, i / (avx ? 32 : 16), i % (avx ? 32 : 16), in[i], out[i]);
						break;
					}
				fflush(stdout);
			}
		}
		rounds++;
		if ((rounds & 7) == 0)
			sched_yield();
		if ((rounds & 63) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 >= secs)
				break;
		}
	}
	printf("fpstress[%d]: mode=%s rounds=%lu errors=%lu\n", id, avx ? "avx" : "sse", rounds, errors);
	return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
	int procs = 4, opt, bad = 0;
	double secs = 10;

	while ((opt = getopt(argc, argv, "p:t:m:")) != -1) {
		switch (opt) {
		case 'p': procs = atoi(optarg); break;
		case 't': secs = atof(optarg); break;
		case 'm': avx = !strcmp(optarg, "avx"); break;
		default: fprintf(stderr, "usage: %s [-p procs] [-t secs] [-m sse|avx]\n", argv[0]); return 2;
		}
	}
	if (avx && !__builtin_cpu_supports("avx")) {
		printf("fpstress: no AVX on this CPU, using sse\n");
		avx = 0;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < procs; i++)
		if (fork() == 0)
			_exit(worker(i, secs));
	for (int i = 0; i < procs; i++) {
		int st;
		if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
			bad = 1;
	}
	printf("fpstress: %s\n", bad ? "FAIL" : "OK");
	return bad;
}
