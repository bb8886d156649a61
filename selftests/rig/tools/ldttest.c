// SPDX-License-Identifier: GPL-2.0
/*
 * ldttest: modify_ldt() under the 2 MiB direct map (issue 6, patches/0104, README.md 6.3).
 *
 *   ldttest [-n TRIES] [-f FILL]
 *
 * A 64-bit PV guest must map every LDT page read-only everywhere, its direct-map alias included
 * (set_aliased_prot() in arch/x86/xen/enlighten_pv.c); under a read-write 2 MiB direct-map page
 * that needs the chunk split first (xen_pv_split_direct()), or Xen refuses the update and the
 * kernel BUG()s. Small unmovable kernel allocations (an LDT page among them) cluster in the
 * pageblocks that already hold such pages, page tables among them, i.e. in chunks that are split
 * already; so the program first fills FILL MiB of pipe buffers (unmovable pages that change no
 * mapping) until the allocator takes fresh pageblocks, which lie in 2 MiB chunks. Then it installs
 * a one-page LDT, loads %gs from it and reads through it (Xen validated the descriptor page). Then,
 * until /sys/kernel/debug/xen_direct_splits names an LDT path (set_aliased_prot, xen_alloc_ldt) as
 * the caller of a split, up to TRIES times: a child installs a 64 KiB LDT (16 fresh vmalloc pages;
 * the child stays alive until the end, so the next one gets other pages).
 *
 * Prints one line: LDTTEST {"splits_before": .., "splits_fill": .., "splits_after": .., "large_before": ..,
 * "large_after": .., "children": .., "segment_ok": 0|1, "ldt_split": "<line of xen_direct_splits>"}
 * (counters from /sys/kernel/debug/xen_direct_large_pages: installed, 2M now, splits, candidates);
 * exit code 0 iff every modify_ldt() and the segment load worked (the caller judges ldt_split).
 */
#define _GNU_SOURCE
#include <asm/ldt.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define DLP "/sys/kernel/debug/xen_direct_large_pages"
#define SPLITS "/sys/kernel/debug/xen_direct_splits"
#define BASE 0x1000u

static volatile uint32_t probe = 0x5a5aa5a5;

static int dlp(long v[4])
{
	FILE *f = fopen(DLP, "r");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "%ld %ld %ld %ld", &v[0], &v[1], &v[2], &v[3]);
	fclose(f);
	return n == 4 ? 0 : -1;
}

/* A flat 32-bit data segment with base BASE at LDT entry idx. */
static int set_entry(unsigned int idx)
{
	struct user_desc d;

	memset(&d, 0, sizeof(d));
	d.entry_number = idx;
	d.base_addr = BASE;
	d.limit = 0xfffff;
	d.seg_32bit = 1;
	d.limit_in_pages = 1;
	d.useable = 1;
	return syscall(SYS_modify_ldt, 0x11, &d, sizeof(d));
}

/* Load %gs with LDT entry idx and read probe through it (needs probe below 4 GiB). */
static int use_entry(unsigned int idx)
{
	unsigned short sel = (idx << 3) | 4 | 3, zero = 0;
	uintptr_t off = (uintptr_t)&probe - BASE;
	uint32_t v;

	if ((uintptr_t)&probe >> 32)
		return 1;	/* a PIE above 4 GiB: the load alone is the test */
	asm volatile("mov %1, %%gs\n\tmovl %%gs:(%2), %0\n\tmov %3, %%gs"
		     : "=r"(v) : "r"(sel), "r"(off), "r"(zero) : "memory");
	return v == probe;
}

/* The last line of SPLITS whose caller is an LDT path, into line ("" if none). */
static void ldt_split(char *line, size_t len)
{
	char buf[256];
	FILE *f = fopen(SPLITS, "r");

	line[0] = 0;
	if (!f)
		return;
	while (fgets(buf, sizeof(buf), f))
		if (strstr(buf, "aliased_prot") || strstr(buf, "_ldt")) {
			buf[strcspn(buf, "\n")] = 0;
			snprintf(line, len, "%s", buf);
		}
	fclose(f);
}

/* Fill mib MiB of pipe buffers (1 MiB a pipe); the pipes stay open until the end. */
static void fill(int mib)
{
	static char buf[1 << 20];
	int i, p[2];

	memset(buf, 1, sizeof(buf));
	for (i = 0; i < mib; i++) {
		if (pipe(p) || fcntl(p[1], F_SETPIPE_SZ, sizeof(buf)) < 0 ||
		    fcntl(p[1], F_SETFL, O_NONBLOCK) || write(p[1], buf, sizeof(buf)) <= 0) {
			fprintf(stderr, "ldttest: pipe fill stopped at %d MiB\n", i);
			return;
		}
	}
}

int main(int argc, char **argv)
{
	long v0[4] = { -1, -1, -1, -1 }, v1[4] = { -1, -1, -1, -1 }, vf[4] = { -1, -1, -1, -1 };
	int tries = 32, mib = 48, n = 0, ok, seg, i, p[2];
	pid_t kids[256];
	char line[256], c;

	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-n"))
			tries = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "-f"))
			mib = atoi(argv[i + 1]);
	}
	if (tries > 256)
		tries = 256;
	if (dlp(v0))
		fprintf(stderr, "ldttest: cannot read %s\n", DLP);
	fill(mib);
	dlp(vf);
	ok = set_entry(0) == 0;
	if (!ok)
		perror("modify_ldt");
	seg = ok && use_entry(0);
	ldt_split(line, sizeof(line));
	while (ok && !line[0] && n < tries) {
		if (pipe(p))
			break;
		kids[n] = fork();
		if (kids[n] < 0)
			break;
		if (kids[n] == 0) {	/* a 64 KiB LDT, kept until the parent ends */
			c = set_entry(8191) == 0 && use_entry(8191) ? 'y' : 'n';
			if (write(p[1], &c, 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
		n++;
		if (read(p[0], &c, 1) != 1 || c != 'y') {
			fprintf(stderr, "ldttest: child %d: modify_ldt or segment load failed\n", n);
			ok = 0;
		}
		close(p[0]);
		close(p[1]);
		ldt_split(line, sizeof(line));
	}
	dlp(v1);
	for (i = 0; i < n; i++) {
		kill(kids[i], SIGKILL);
		waitpid(kids[i], NULL, 0);
	}
	printf("LDTTEST {\"splits_before\": %ld, \"splits_fill\": %ld, \"splits_after\": %ld, "
	       "\"large_before\": %ld, \"large_after\": %ld, \"children\": %d, \"segment_ok\": %d, "
	       "\"ldt_split\": \"%s\"}\n", v0[2], vf[2], v1[2], v0[1], v1[1], n, seg, line);
	return ok && seg ? 0 : 1;
}
