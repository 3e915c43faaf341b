/*
 * afxdp_ref: a plain AF_XDP sender/receiver on libxdp's xsk API, the
 * performance reference for netmap-rs's AF_XDP backend (see
 * afpacket-bench.sh, which builds and runs it).
 *
 *   afxdp_ref -i IFNAME [-q QUEUE] -f tx|rx|drop [-l LEN] [-T SECONDS]
 *             [-b BATCH] [-N] [-c copy|zc|auto] [-m skb|drv|auto] [-p]
 *
 *   tx    send LEN-byte UDP/IPv4 broadcast frames for T seconds
 *   rx    receive for T seconds, counting packets and bytes
 *   drop  attach an XDP program returning XDP_DROP for T seconds
 *
 * T = 0 (the default) runs until SIGINT/SIGTERM. tx and rx end with C
 * pkt-gen's line, `Speed: N pps Bandwidth: B bps (raw R bps). Average
 * batch: A pkts` (-N: plain numbers, else 1.234 M style). The batch is
 * packets per descriptor batch moved through the TX or RX ring.
 *
 * Build: gcc -O2 -Wall -Wextra -o afxdp_ref afxdp_ref.c -lxdp -lbpf
 */
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

/* 2048-byte frames (half of XSK_UMEM__DEFAULT_FRAME_SIZE): two per page,
 * room for any 1514-byte frame. NUM_FRAMES covers a full fill ring plus a
 * full RX ring, or a full TX ring twice over. */
#define FRAME_SIZE 2048
#define RING_SIZE 2048
#define NUM_FRAMES (2 * RING_SIZE)

/* libbpf warns about libxdp's own ELF sections (.xdp_run_config,
 * xdp_metadata) on each load: drop those and libbpf's debug output. */
static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG || strstr(fmt, "skipping unrecognized data section"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what, int err)
{
	fprintf(stderr, "afxdp_ref: %s: %s\n", what, strerror(err));
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* C pkt-gen's norm(): `1.234 M`, or with -N the bare number. */
static const char *norm(char *buf, double v, int plain)
{
	static const char *units[] = { "", "K", "M", "G", "T" };
	int i = 0;
	if (plain) {
		snprintf(buf, 32, "%.0f ", v);
		return buf;
	}
	while (v >= 1000 && i < 4) {
		v /= 1000;
		i++;
	}
	snprintf(buf, 32, "%.3f %s", v, units[i]);
	return buf;
}

static void report(unsigned long long pkts, unsigned long long bytes,
		   unsigned long long batches, double secs, int plain)
{
	char a[32], b[32], c[32];
	if (secs <= 0)
		secs = 1e-6;
	fprintf(stderr, "%llu packets %llu bytes in %.3f s\n", pkts, bytes, secs);
	/* raw counts no framing, as pkt-gen without -B */
	printf("Speed: %spps Bandwidth: %sbps (raw %sbps). Average batch: %.2f pkts\n",
	       norm(a, pkts / secs, plain), norm(b, 8.0 * bytes / secs, plain),
	       norm(c, 8.0 * bytes / secs, plain),
	       batches ? (double)pkts / batches : 0.0);
}

static unsigned short csum(const void *p, size_t len, unsigned int sum)
{
	const unsigned char *b = p;
	for (; len > 1; len -= 2, b += 2)
		sum += (b[0] << 8) | b[1];
	if (len)
		sum += b[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

/* A broadcast Ethernet / IPv4 10.0.0.1 -> 10.0.0.2 / UDP 1234 -> 4321
 * frame of len bytes, both checksums filled in (big-endian by hand). */
static void make_frame(unsigned char *f, int len)
{
	unsigned char *ip = f + 14, *udp = ip + 20;
	int iplen = len - 14, udplen = len - 34;
	unsigned int pseudo;
	unsigned short s;
	memset(f, 0xff, 6);
	memcpy(f + 6, "\x02\x00\x00\x00\x00\x01\x08\x00", 8);
	memset(ip, 0, 20);
	ip[0] = 0x45;
	ip[2] = iplen >> 8, ip[3] = iplen;
	ip[8] = 64, ip[9] = 17; /* TTL, UDP */
	memcpy(ip + 12, "\x0a\x00\x00\x01\x0a\x00\x00\x02", 8);
	s = csum(ip, 20, 0);
	ip[10] = s >> 8, ip[11] = s;
	udp[0] = 1234 >> 8, udp[1] = 1234 & 0xff;
	udp[2] = 4321 >> 8, udp[3] = 4321 & 0xff;
	udp[4] = udplen >> 8, udp[5] = udplen;
	udp[6] = udp[7] = 0;
	for (int i = 8; i < udplen; i++)
		udp[i] = 'a' + i % 26;
	/* pseudo header: addresses, protocol, UDP length */
	pseudo = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + udplen;
	s = csum(udp, udplen, pseudo);
	if (s == 0)
		s = 0xffff; /* 0 means "no checksum" in UDP */
	udp[6] = s >> 8, udp[7] = s;
}

/* -f drop: `mov r0, XDP_DROP; exit`, attached for the whole run. */
static int run_drop(int ifindex, __u32 xdp_flags, double secs)
{
	struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_DROP },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	double end = now() + secs;
	int fd, err;
	if (!(xdp_flags & XDP_FLAGS_MODES))
		xdp_flags |= XDP_FLAGS_SKB_MODE; /* default for drop: generic */
	fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "xdp_drop", "GPL", prog, 2, NULL);
	if (fd < 0)
		die("bpf_prog_load", -fd);
	/* UPDATE_IF_NOEXIST: refuse to replace someone else's program */
	err = bpf_xdp_attach(ifindex, fd, xdp_flags | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
	if (err)
		die("bpf_xdp_attach", -err);
	fprintf(stderr, "afxdp_ref: XDP_DROP attached (%s mode)\n",
		xdp_flags & XDP_FLAGS_SKB_MODE ? "skb" : "drv");
	while (!stop && (secs == 0 || now() < end))
		usleep(100000);
	err = bpf_xdp_detach(ifindex, xdp_flags, NULL);
	if (err)
		die("bpf_xdp_detach", -err);
	close(fd);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: afxdp_ref -i IFNAME [-q QUEUE] -f tx|rx|drop [-l LEN] [-T SECONDS]\n"
		"                 [-b BATCH] [-N] [-c copy|zc|auto] [-m skb|drv|auto] [-p]\n"
		"  -c  socket bind mode (default auto: the kernel picks)\n"
		"  -m  XDP attach mode of the rx and drop programs (default: libxdp's\n"
		"      choice for rx, skb for drop)\n"
		"  -p  rx: sleep in poll() when idle instead of busy-polling\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *ifname = NULL, *func = NULL;
	int queue = 0, len = 60, batch = 64, plain = 0, use_poll = 0, opt;
	double secs = 0;
	__u16 bind_flags = XDP_USE_NEED_WAKEUP;
	__u32 xdp_flags = 0;

	while ((opt = getopt(argc, argv, "i:q:f:l:T:b:Nc:m:p")) != -1) {
		switch (opt) {
		case 'i': ifname = optarg; break;
		case 'q': queue = atoi(optarg); break;
		case 'f': func = optarg; break;
		case 'l': len = atoi(optarg); break;
		case 'T': secs = atof(optarg); break;
		case 'b': batch = atoi(optarg); break;
		case 'N': plain = 1; break;
		case 'p': use_poll = 1; break;
		case 'c':
			if (!strcmp(optarg, "copy")) bind_flags |= XDP_COPY;
			else if (!strcmp(optarg, "zc")) bind_flags |= XDP_ZEROCOPY;
			else if (strcmp(optarg, "auto")) usage();
			break;
		case 'm':
			if (!strcmp(optarg, "skb")) xdp_flags = XDP_FLAGS_SKB_MODE;
			else if (!strcmp(optarg, "drv")) xdp_flags = XDP_FLAGS_DRV_MODE;
			else if (strcmp(optarg, "auto")) usage();
			break;
		default: usage();
		}
	}
	if (!ifname || !func || optind != argc || (strcmp(func, "tx") && strcmp(func, "rx") &&
						 strcmp(func, "drop")))
		usage();
	if (len < 42 || len > FRAME_SIZE || batch < 1 || batch > RING_SIZE || secs < 0 || queue < 0) {
		fprintf(stderr, "afxdp_ref: need 42 <= LEN <= %d, 1 <= BATCH <= %d, T >= 0\n",
			FRAME_SIZE, RING_SIZE);
		return 2;
	}
	int ifindex = if_nametoindex(ifname);
	if (!ifindex)
		die(ifname, errno);

	/* No SA_RESTART: a signal also ends a blocking poll() or usleep(). */
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	libbpf_set_print(quiet);
	if (!strcmp(func, "drop"))
		return run_drop(ifindex, xdp_flags, secs);

	/* The UMEM is pinned by the kernel; lift the memlock limit for it. */
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	setrlimit(RLIMIT_MEMLOCK, &rl);
	size_t size = (size_t)NUM_FRAMES * FRAME_SIZE;
	unsigned char *area = mmap(NULL, size, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (area == MAP_FAILED)
		die("mmap", errno);

	/* Zeroed: libxdp 1.3 leaves the fill ring's cached producer unset. */
	struct xsk_ring_prod fq = { 0 }, tx = { 0 };
	struct xsk_ring_cons cq = { 0 }, rx = { 0 };
	struct xsk_umem *umem;
	struct xsk_umem_config ucfg = {
		.fill_size = RING_SIZE, .comp_size = RING_SIZE,
		.frame_size = FRAME_SIZE, .frame_headroom = 0,
	};
	int err;

	int is_tx = !strcmp(func, "tx");
	struct xsk_socket *xsk;
	struct xsk_socket_config scfg = {
		.rx_size = RING_SIZE, .tx_size = RING_SIZE,
		.xdp_flags = xdp_flags, .bind_flags = bind_flags,
		/* tx needs no XDP program: nothing is redirected to a TX-only
		 * socket. rx lets libxdp load its default XSKMAP redirect
		 * program and remove it again in xsk_socket__delete(): through
		 * its dispatcher if bpffs is mounted, else (as under `ip netns
		 * exec`, which remounts /sys) as a single program. */
		.libxdp_flags = is_tx ? XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD : 0,
	};
	/* The bind needs a fill and completion ring (the UMEM's) and one of
	 * RX/TX; each direction creates only the ring it uses.
	 * A closed socket's hold on the queue goes away only after an RCU
	 * grace period and a work item, tens of ms: a run started right
	 * after another gets EBUSY from bind(). Retry that for up to 2 s,
	 * each time with a new UMEM, so that nothing of a failed attempt's
	 * state is carried into the next. */
	for (int tries = 0;; tries++) {
		err = xsk_umem__create(&umem, area, size, &fq, &cq, &ucfg);
		if (err)
			die("xsk_umem__create", -err);
		err = xsk_socket__create(&xsk, ifname, queue, umem, is_tx ? NULL : &rx,
					 is_tx ? &tx : NULL, &scfg);
		if (err != -EBUSY || tries == 40 || stop)
			break;
		xsk_umem__delete(umem);
		usleep(50000);
	}
	if (err)
		die("xsk_socket__create", -err);
	int fd = xsk_socket__fd(xsk);

	struct xdp_options xo;
	socklen_t olen = sizeof(xo);
	if (getsockopt(fd, SOL_XDP, XDP_OPTIONS, &xo, &olen))
		die("getsockopt XDP_OPTIONS", errno);
	/* rx: which attach mode libxdp got for its program (native first). */
	const char *prog = "";
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	if (!is_tx && !bpf_xdp_query(ifindex, 0, &q))
		prog = q.attach_mode == XDP_ATTACHED_DRV ? ", XDP program in drv mode" :
		       q.attach_mode == XDP_ATTACHED_SKB ? ", XDP program in skb mode" :
		       q.attach_mode == XDP_ATTACHED_NONE ? ", no XDP program" : ", XDP program";
	fprintf(stderr, "afxdp_ref: %s queue %d %s: %s mode%s, %d-byte frames, batch %d\n",
		ifname, queue, func, xo.flags & XDP_OPTIONS_ZEROCOPY ? "zero-copy" : "copy",
		prog, FRAME_SIZE, batch);

	unsigned long long pkts = 0, bytes = 0, batches = 0;
	double start = now(), end = start + secs, first = 0, last = 0;
	__u32 idx;

	if (is_tx) {
		/* Every frame holds the same packet, written once. Frames are
		 * used round-robin; at most RING_SIZE are in flight, so a frame
		 * comes round again only after its completion. */
		for (int i = 0; i < NUM_FRAMES; i++)
			make_frame(area + (size_t)i * FRAME_SIZE, len);
		unsigned int next = 0, outstanding = 0;
		while (!stop && (secs == 0 || now() < end)) {
			unsigned int want = RING_SIZE - outstanding;
			if (want > (unsigned int)batch)
				want = batch;
			unsigned int n = xsk_ring_prod__reserve(&tx, want, &idx);
			for (unsigned int i = 0; i < n; i++) {
				struct xdp_desc *d = xsk_ring_prod__tx_desc(&tx, idx + i);
				d->addr = (__u64)next * FRAME_SIZE;
				d->len = len;
				d->options = 0;
				next = (next + 1) % NUM_FRAMES;
			}
			if (n) {
				xsk_ring_prod__submit(&tx, n);
				outstanding += n;
				batches++;
			}
			/* copy mode (and some drivers) only send when kicked */
			if (xsk_ring_prod__needs_wakeup(&tx) &&
			    sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 &&
			    errno != EAGAIN && errno != EBUSY && errno != ENOBUFS && errno != EINTR)
				die("sendto", errno);
			/* packets count once the kernel hands their frames back */
			unsigned int done = xsk_ring_cons__peek(&cq, RING_SIZE, &idx);
			if (done) {
				xsk_ring_cons__release(&cq, done);
				outstanding -= done;
				pkts += done;
			}
		}
		bytes = pkts * len;
		last = now();
		first = start;
	} else {
		/* Hand the kernel a full fill ring: frames 0..RING_SIZE-1,
		 * which then circulate fill ring -> RX ring -> fill ring. */
		if (xsk_ring_prod__reserve(&fq, RING_SIZE, &idx) != RING_SIZE)
			die("fill ring", ENOSPC);
		for (unsigned int i = 0; i < RING_SIZE; i++)
			*xsk_ring_prod__fill_addr(&fq, idx + i) = (__u64)i * FRAME_SIZE;
		xsk_ring_prod__submit(&fq, RING_SIZE);
		/* Runs T seconds from start; the rate is taken from the first
		 * to the latest packet, as pkt_gen and afpacket_baseline do, so
		 * an early start does not dilute it. */
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		while (!stop && (secs == 0 || now() < end)) {
			unsigned int n = xsk_ring_cons__peek(&rx, batch, &idx);
			if (!n) {
				if (use_poll)
					poll(&pfd, 1, 100);
				else if (xsk_ring_prod__needs_wakeup(&fq))
					recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
				continue;
			}
			/* Each received frame goes straight back to the fill
			 * ring, which has room: only RING_SIZE frames circulate. */
			__u32 fidx;
			while (xsk_ring_prod__reserve(&fq, n, &fidx) != n)
				;
			for (unsigned int i = 0; i < n; i++) {
				const struct xdp_desc *d = xsk_ring_cons__rx_desc(&rx, idx + i);
				bytes += d->len;
				*xsk_ring_prod__fill_addr(&fq, fidx + i) = xsk_umem__extract_addr(d->addr);
			}
			xsk_ring_prod__submit(&fq, n);
			xsk_ring_cons__release(&rx, n);
			pkts += n;
			batches++;
			last = now();
			if (!first)
				first = last;
		}
		if (!first)
			first = start, last = now();
	}
	/* The kernel's own counts of what it could not deliver or send. */
	struct xdp_statistics st;
	olen = sizeof(st);
	if (!getsockopt(fd, SOL_XDP, XDP_STATISTICS, &st, &olen))
		fprintf(stderr, "afxdp_ref: kernel: rx_dropped %llu rx_ring_full %llu "
			"fill_ring_empty %llu tx_invalid %llu\n", st.rx_dropped,
			st.rx_ring_full, st.rx_fill_ring_empty_descs, st.tx_invalid_descs);
	report(pkts, bytes, batches, last - first, plain);
	xsk_socket__delete(xsk);
	xsk_umem__delete(umem);
	munmap(area, size);
	return 0;
}
