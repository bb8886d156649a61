// SPDX-License-Identifier: GPL-2.0
/*
 * ksample: where a domain's CPUs spend their time, by kernel function (a perf-less profile for
 * the bench: the rig's images have no perf, and TCG has no PMU).
 *
 *   ksample SECS [TOP]
 *
 * Samples the instruction pointer and kernel call chain of every online CPU with the cpu-clock
 * software event for SECS seconds (at the rate of the kernel's timer without high resolution
 * timers: HZ samples per second and CPU; under QEMU's -icount the clock counts instructions, so
 * the samples are shares of the instructions executed), resolves kernel addresses with
 * /proc/kallsyms (modules included) and prints one line:
 *
 *   KSAMPLE {"samples": N, "lost": L, "user": U, "unknown": K, "mods": {"kernel": n, ...},
 *            "idle": I, "chains": [[n, "sym", "caller", ...], ...], "top": [["sym", "mod", n], ...],
 *            "hypercalls": [["sym", "mod", n], ...]}
 *
 * A sample in Xen's hypercall stub (time in the hypervisor, which a PV guest's clock runs
 * through) counts for the function that made the hypercall, in "hypercalls"; "idle" counts the
 * samples of the idle loop and its blocking hypercall (the CPU was not busy); "top" the TOP
 * (default 40) functions with the most samples of their own; "mods" both per module; "chains"
 * the TOP most frequent busy call chains, a function and its first callers (the kernel's
 * unwinder may guess: without frame pointers or ORC, it reports the text addresses it finds on
 * the stack, some of them stale).
 */
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_CPUS 64
#define RING_PAGES 64 /* data pages per CPU (a power of two) */
#define MAX_STACK 16  /* kernel call chain entries kept per sample */

struct sym {
	uint64_t addr;
	char name[128];
	char mod[64];
	long hits;
	long hv; /* samples in a hypercall made by this function */
};

static struct sym *syms;
static size_t nsyms;

static int by_addr(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int by_hits(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;

	return (y->hits > x->hits) - (y->hits < x->hits);
}

static int by_hv(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;

	return (y->hv > x->hv) - (y->hv < x->hv);
}

/* Text symbols of /proc/kallsyms, sorted by address. */
static void load_kallsyms(void)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	size_t cap = 0;
	char line[256];

	if (!f) {
		perror("/proc/kallsyms");
		exit(1);
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long long addr;
		char type, name[128], mod[64] = "kernel";

		if (sscanf(line, "%llx %c %127s [%63[^]]]", &addr, &type, name, mod) < 3)
			continue;
		if (type != 't' && type != 'T')
			continue;
		if (nsyms == cap) {
			cap = cap ? cap * 2 : 65536;
			syms = realloc(syms, cap * sizeof(*syms));
			if (!syms)
				exit(1);
		}
		syms[nsyms].addr = addr;
		snprintf(syms[nsyms].name, sizeof(syms[nsyms].name), "%s", name);
		snprintf(syms[nsyms].mod, sizeof(syms[nsyms].mod), "%s", mod);
		syms[nsyms].hits = 0;
		syms[nsyms].hv = 0;
		nsyms++;
	}
	fclose(f);
	qsort(syms, nsyms, sizeof(*syms), by_addr);
}

/* The symbol at or below ip, or NULL. */
static struct sym *lookup(uint64_t ip)
{
	size_t lo = 0, hi = nsyms;

	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (syms[mid].addr <= ip)
			lo = mid;
		else
			hi = mid;
	}
	return nsyms && syms[lo].addr <= ip ? &syms[lo] : NULL;
}

static int is_idle(const char *name)
{
	static const char *const idle[] = { "default_idle", "xen_safe_halt", "pv_native_safe_halt",
					    "arch_cpu_idle", "do_idle", "cpu_idle_poll",
					    "default_idle_call", "xen_hypercall_sched_op", NULL };

	for (int i = 0; idle[i]; i++)
		if (!strcmp(name, idle[i]))
			return 1;
	return 0;
}

struct ring {
	int fd;
	struct perf_event_mmap_page *meta;
	char *data;
	uint64_t size;
};

static long samples, lost, user, unknown, idle;

/* Busy samples by their first CHAIN_DEPTH functions (the sample's own, then its callers). */
#define CHAIN_DEPTH 6
#define MAX_CHAINS 4096
static struct chain {
	const struct sym *f[CHAIN_DEPTH];
	long n;
} chains[MAX_CHAINS];
static int nchains;

static void count_chain(const struct sym *self, const uint64_t *chain, uint64_t nr)
{
	const struct sym *f[CHAIN_DEPTH] = { self };
	int d = 1, i;

	for (uint64_t k = 0; k < nr && d < CHAIN_DEPTH; k++) {
		const struct sym *c;

		if (chain[k] >= (uint64_t)-4095)
			continue;
		c = lookup(chain[k]);
		if (c && c != f[d - 1])
			f[d++] = c;
	}
	for (i = 0; i < nchains && memcmp(chains[i].f, f, sizeof(f)); i++)
		;
	if (i == nchains) {
		if (nchains == MAX_CHAINS)
			return;
		memcpy(chains[nchains++].f, f, sizeof(f));
	}
	chains[i].n++;
}

static int by_n(const void *a, const void *b)
{
	const struct chain *x = a, *y = b;

	return (y->n > x->n) - (y->n < x->n);
}

static int is_hypercall(const struct sym *s)
{
	return s && !strncmp(s->name, "xen_hypercall", 13);
}

/*
 * One sample: ip and its kernel call chain (nr entries, context markers included). A sample in
 * Xen's hypercall stub is time spent in the hypervisor on behalf of the function that made the
 * hypercall, the first other one in the chain (the chain comes from the stack, so this is where
 * the unwinder is most reliable); made by the idle loop, it is idle time.
 */
static void account(uint64_t ip, const uint64_t *chain, uint64_t nr)
{
	struct sym *s = lookup(ip);

	samples++;
	if (ip < 0xffff800000000000ULL) {
		user++;
		return;
	}
	if (!s) {
		unknown++;
		return;
	}
	if (is_hypercall(s)) {
		for (uint64_t i = 0; i < nr; i++) {
			struct sym *c;

			if (chain[i] >= (uint64_t)-4095)
				continue;
			c = lookup(chain[i]);
			if (c && !is_hypercall(c)) {
				if (is_idle(c->name)) {
					idle++;
				} else {
					c->hv++;
					count_chain(s, chain, nr);
				}
				return;
			}
		}
	}
	if (is_idle(s->name)) {
		idle++;
		return;
	}
	s->hits++;
	count_chain(s, chain, nr);
}

static void drain(struct ring *r)
{
	uint64_t head = __atomic_load_n(&r->meta->data_head, __ATOMIC_ACQUIRE);
	uint64_t tail = r->meta->data_tail;

	while (tail < head) {
		struct perf_event_header h;
		uint64_t v[2 + MAX_STACK];

		for (size_t i = 0; i < sizeof(h); i++)
			((char *)&h)[i] = r->data[(tail + i) & (r->size - 1)];
		if (h.size < sizeof(h))
			break;
		if (h.type == PERF_RECORD_SAMPLE || h.type == PERF_RECORD_LOST) {
			/* sample: ip, nr, ips[nr]; lost: id, count */
			size_t n = (h.size - sizeof(h)) / 8;

			if (n > 2 + MAX_STACK)
				n = 2 + MAX_STACK;
			for (size_t i = 0; i < n * 8; i++)
				((char *)v)[i] = r->data[(tail + sizeof(h) + i) & (r->size - 1)];
			if (h.type == PERF_RECORD_LOST)
				lost += v[1];
			else if (n >= 2)
				account(v[0], v + 2, v[1] < n - 2 ? v[1] : n - 2);
		}
		tail += h.size;
	}
	__atomic_store_n(&r->meta->data_tail, tail, __ATOMIC_RELEASE);
}

int main(int argc, char **argv)
{
	struct ring rings[MAX_CPUS];
	int ncpu = 0, top = argc > 2 ? atoi(argv[2]) : 40;
	long pgsz = sysconf(_SC_PAGESIZE);
	struct timespec end, now;

	if (argc < 2) {
		fprintf(stderr, "usage: ksample SECS [TOP]\n");
		return 2;
	}
	load_kallsyms();
	for (int cpu = 0; cpu < MAX_CPUS && cpu < sysconf(_SC_NPROCESSORS_ONLN); cpu++) {
		struct perf_event_attr a = {
			.size = sizeof(a),
			.type = PERF_TYPE_SOFTWARE,
			.config = PERF_COUNT_SW_CPU_CLOCK,
			.sample_period = 1000000,
			.sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_CALLCHAIN,
			.exclude_callchain_user = 1,
			.sample_max_stack = MAX_STACK,
			.disabled = 1,
			.wakeup_events = 64,
		};
		int fd = syscall(SYS_perf_event_open, &a, -1, cpu, -1, 0);
		void *m;

		if (fd < 0) {
			perror("perf_event_open");
			return 1;
		}
		m = mmap(NULL, (RING_PAGES + 1) * pgsz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		rings[ncpu] = (struct ring){ fd, m, (char *)m + pgsz, RING_PAGES * pgsz };
		ncpu++;
	}
	for (int i = 0; i < ncpu; i++)
		ioctl(rings[i].fd, PERF_EVENT_IOC_ENABLE, 0);
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += atoi(argv[1]);
	do {
		usleep(200000);
		for (int i = 0; i < ncpu; i++)
			drain(&rings[i]);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec < end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
	for (int i = 0; i < ncpu; i++) {
		ioctl(rings[i].fd, PERF_EVENT_IOC_DISABLE, 0);
		drain(&rings[i]);
	}

	/* Per module, and the busy functions by samples. */
	printf("KSAMPLE {\"samples\": %ld, \"lost\": %ld, \"user\": %ld, \"unknown\": %ld, \"mods\": {",
	       samples, lost, user, unknown);
	{
		char seen[64][64];
		long count[64];
		int nm = 0;

		for (size_t i = 0; i < nsyms; i++) {
			int j;

			if (!syms[i].hits && !syms[i].hv)
				continue;
			for (j = 0; j < nm && strcmp(seen[j], syms[i].mod); j++)
				;
			if (j == nm) {
				if (nm == 64)
					continue;
				strcpy(seen[nm], syms[i].mod);
				count[nm++] = 0;
			}
			count[j] += syms[i].hits + syms[i].hv;
		}
		for (int j = 0; j < nm; j++)
			printf("%s\"%s\": %ld", j ? ", " : "", seen[j], count[j]);
	}
	printf("}, \"idle\": %ld, \"chains\": [", idle);
	qsort(chains, nchains, sizeof(*chains), by_n);
	for (int i = 0; i < nchains && i < top; i++) {
		printf("%s[%ld", i ? ", " : "", chains[i].n);
		for (int d = 0; d < CHAIN_DEPTH && chains[i].f[d]; d++)
			printf(", \"%s\"", chains[i].f[d]->name);
		printf("]");
	}
	printf("], \"top\": [");
	qsort(syms, nsyms, sizeof(*syms), by_hits);
	for (int i = 0; i < (int)nsyms && i < top && syms[i].hits; i++)
		printf("%s[\"%s\", \"%s\", %ld]", i ? ", " : "", syms[i].name, syms[i].mod,
		       syms[i].hits);
	printf("], \"hypercalls\": [");
	qsort(syms, nsyms, sizeof(*syms), by_hv);
	for (int i = 0; i < (int)nsyms && i < top && syms[i].hv; i++)
		printf("%s[\"%s\", \"%s\", %ld]", i ? ", " : "", syms[i].name, syms[i].mod,
		       syms[i].hv);
	printf("]}\n");
	return 0;
}
