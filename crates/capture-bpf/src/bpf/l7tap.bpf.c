// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* l7tap's kernel side: socket data from syscall tracepoints (no kprobes on this kernel),
 * plaintext from OpenSSL uprobes, connection lifecycle, in-kernel filters, a ring buffer
 * per CPU.
 *
 * Flow of a data syscall, all at sys_exit_X (no entry program: a syscall that is filtered
 * out costs one tracepoint, not two, and nothing is handed from entry to exit):
 *   nothing moved (ret <= 0) -> done; pid filter -> the arguments from the user registers
 *   saved at syscall entry (bpf_task_pt_regs) -> fd is an inet socket? (CO-RE walk
 *   task->files->fdt->fd[fd]) -> port filter -> TLS checks -> copy up to snaplen bytes of
 *   what really moved (the return value), stamp the per-socket stream offset, one event
 *   into the ring of this CPU.
 * Everything skipped or lost is counted in the per-CPU stats map. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "l7tap.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define EINPROGRESS 115
#define MSG_PEEK 2

/* Hides a value from clang so that a following bound check or mask is kept: clang knows
 * the bound already and would drop it, the verifier does not and needs it. */
#define opaque(var) asm volatile("" : "+r"(var))

/* One ring buffer per CPU: a program writes into the ring of the CPU it runs on, so
 * producers on different CPUs never share the ring's spinlock and position cache lines (with
 * one shared ring, the receiver's events written from the other CPU made a captured 100-byte
 * TCP send ~170 ns dearer). User space creates the rings (sized then) and merges them by
 * timestamp. */
struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); /* the template; the real rings are sized by user space */
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 256); /* set to the number of possible CPUs before load */
	__type(key, __u32);
	__array(values, struct ring);
} rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7tap_config);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Indexed by port: 0 = not listed, else PORT_LISTED | snaplen for that port (0: the global
 * one). An array, not a hash: the lookup is an inlined index, on every traced syscall. */
#define PORT_LISTED 0x80000000u
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} ports SEC(".maps");

/* tgid -> PID_ALLOW / PID_DENY */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} pids SEC(".maps");

#define K_BUF 1
#define K_IOV 2
#define K_MSG 3
#define K_MMSG 4
#define K_NONE 5
#define K_SELECT 6 /* io_uring: a buffer the kernel picks, named by the request at completion */

struct conn_state {
	__u64 off[2];     /* syscall byte stream, per direction */
	__u64 tls_off[2]; /* plaintext stream of a TLS connection */
	__u8 role;
	__u8 tls;
	__u8 announced;
	__u8 _pad[5];
};

/* socket -> offsets and role; LRU so a missed close cannot fill it */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_state);
} conns SEC(".maps");

/* pid_tgid -> fd of connect/accept in flight */
struct lifecycle_call {
	__u64 addr;
	__u32 fd;
	__u8 sc;
	__u8 _pad[3];
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct lifecycle_call);
} lifecycle SEC(".maps");

/* OpenSSL: the SSL call in flight per thread, and the socket an SSL* was last seen on */
struct ssl_call {
	__u64 ssl;
	__u64 buf;
	__u64 out_len; /* size_t * of the _ex variants, 0 otherwise */
	__u64 sk;      /* socket of a nested syscall, if one happened (or SK_FILTERED) */
	__u8 dir;
	__u8 sc;
	__u8 socket_only; /* NSPR: never reported unbound (NSS has no memory BIOs) */
	__u8 _pad[5];
};
/* ssl_call.sk, ssl_socks value: the call's socket was filtered out by port (a kernel socket
 * address is never 1). */
#define SK_FILTERED 1ULL
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ssl_call);
} ssl_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} ssl_socks SEC(".maps");

/* The event being built: header + room for two SNAP_MAX halves so that the verifier can
 * prove every (offset < SNAP_MAX, length <= SNAP_MAX) copy in bounds. */
struct scratch {
	struct l7tap_event hdr;
	__u8 data[2 * SNAP_MAX];
};
/* One slot per CPU. A per-CPU array would be the natural choice, but its values are capped
 * at 32 KiB; user space sets max_entries to the number of possible CPUs before loading. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += n;
}

static __always_inline struct l7tap_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&settings, &zero);
}

/* Pid filter: 0 = pass. */
static __always_inline int pid_filtered(struct l7tap_config *cfg, __u32 tgid)
{
	if (tgid == cfg->self_pid)
		return 1;
	if (!cfg->pid_rules)
		return 0;
	__u32 *mark = bpf_map_lookup_elem(&pids, &tgid);
	if (mark && *mark == PID_DENY)
		return 1;
	if (cfg->pid_allow && !(mark && *mark == PID_ALLOW))
		return 1;
	return 0;
}

/* Files user space has looked at: programs (for Go's crypto/tls, OpenSSL linked in) and TLS
 * libraries. Their execs and mappings are not reported again, so a program started a thousand
 * times a second costs user space nothing after its first start. LRU: a file pushed out is
 * reported once more, and put back. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct file_key);
	__type(value, __u8);
} known_files SEC(".maps");

/* The socket behind fd in the current task, or NULL when fd is not an inet TCP/UDP socket
 * (or, when `want_unix` is set, a Unix-domain stream socket).
 * This runs on every traced syscall, so it reads through BTF pointers (plain loads the JIT
 * inlines) instead of a chain of bpf_probe_read_kernel helper calls: the task comes from
 * bpf_get_current_task_btf(), the file from one probe read of the fd array (a variable index
 * into a pointer array is not a BTF access), re-typed with bpf_core_cast. */
static __always_inline struct sock *sock_of_file(struct file *fp, __u32 want_unix)
{
	if (!fp)
		return NULL;
	struct file *f = bpf_core_cast(fp, struct file);
	struct inode *ino = f->f_inode;
	if (!ino || (ino->i_mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *so = bpf_core_cast(f->private_data, struct socket);
	if (!so)
		return NULL;
	if (so->type != SOCK_STREAM && so->type != SOCK_DGRAM)
		return NULL;
	struct sock *sk = so->sk;
	if (!sk)
		return NULL;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6 &&
	    !(want_unix && family == AF_UNIX && so->type == SOCK_STREAM))
		return NULL;
	return (struct sock *)(unsigned long)sk;
}

/* The file behind fd in `task`, NULL when none. */
static __always_inline struct file *file_of_fd(struct task_struct *task, __u32 fd)
{
	struct files_struct *files = task->files;
	if (!files)
		return NULL;
	struct fdtable *fdt = files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return NULL;
	struct file **fds = fdt->fd;
	struct file *fp = NULL;
	if (bpf_probe_read_kernel(&fp, sizeof(fp), &fds[fd]))
		return NULL;
	return fp;
}

static __always_inline struct sock *sock_of_fd(struct task_struct *task, __u32 fd, __u32 want_unix)
{
	return sock_of_file(file_of_fd(task, fd), want_unix);
}

static __always_inline void sk_ports(struct sock *skp, __u16 *lport, __u16 *rport)
{
	struct sock *sk = bpf_core_cast(skp, struct sock);
	*lport = sk->__sk_common.skc_num;
	*rport = bpf_ntohs(sk->__sk_common.skc_dport);
}

/* Port filter and per-port snaplen. `peer_port` is the destination of an unconnected UDP
 * sendto (0 otherwise). Returns 0 when filtered out. */
static __always_inline __u32 snaplen_for_peer(struct l7tap_config *cfg, struct sock *sk,
					      __u16 peer_port)
{
	if (!cfg->port_rules ||
	    bpf_core_cast(sk, struct sock)->__sk_common.skc_family == AF_UNIX)
		/* (A Unix socket has no ports: the port rules are not about it.) */
		return cfg->snaplen > SNAP_MAX ? SNAP_MAX : (cfg->snaplen ? cfg->snaplen : 1);
	__u16 lport, rport;
	sk_ports(sk, &lport, &rport);
	if (!rport)
		rport = peer_port;
	__u32 l = lport, r = rport;
	__u32 *pl = bpf_map_lookup_elem(&ports, &l);
	__u32 v = pl ? *pl : 0;
	if (!v && r) {
		__u32 *pr = bpf_map_lookup_elem(&ports, &r);
		v = pr ? *pr : 0;
	}
	if (!v && cfg->port_filter)
		return 0;
	__u32 own = v & ~PORT_LISTED;
	__u32 snap = own ? own : cfg->snaplen;
	if (snap > SNAP_MAX)
		snap = SNAP_MAX;
	return snap ? snap : 1;
}

static __always_inline __u32 snaplen_for(struct l7tap_config *cfg, struct sock *sk)
{
	return snaplen_for_peer(cfg, sk, 0);
}

/* The peer named by a sockaddr in user memory (sendto/recvfrom address, msg_name). */
struct user_peer {
	__u16 family; /* AF_INET or AF_INET6; 0 when absent or unreadable */
	__u16 port;   /* host order */
	__u8 addr[16];
};

/* Reads the peer at `uaddr` once per syscall (each bpf_probe_read_user costs tens of ns):
 * the 16 bytes every inet sockaddr has (the kernel rejects shorter AF_INET and AF_INET6
 * addresses), which hold family, port and an IPv4 address; for IPv6 the address as well. */
static __always_inline void read_user_peer(__u64 uaddr, struct user_peer *p)
{
	struct sockaddr_in sin = {};
	p->family = 0;
	if (!uaddr || bpf_probe_read_user(&sin, sizeof(sin), (void *)uaddr))
		return;
	if (sin.sin_family == AF_INET) {
		__builtin_memcpy(p->addr, &sin.sin_addr.s_addr, 4);
	} else if (sin.sin_family == AF_INET6) {
		void *a6 = (void *)(uaddr + __builtin_offsetof(struct sockaddr_in6, sin6_addr));
		if (bpf_probe_read_user(p->addr, 16, a6))
			return;
	} else {
		return;
	}
	p->family = sin.sin_family;
	p->port = bpf_ntohs(sin.sin_port);
}

static __always_inline void fill_addrs(struct l7tap_event *e, struct sock *skp)
{
	struct sock *sk = bpf_core_cast(skp, struct sock);
	__u16 family = sk->__sk_common.skc_family;
	e->family = family;
	e->lport = sk->__sk_common.skc_num;
	e->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	struct socket *so = bpf_core_cast(sk->sk_socket, struct socket);
	e->sotype = so ? so->type : 0;
	if (family == AF_UNIX) {
		/* No addresses (the names come once, in an EV_UNIX_NAMES event). */
		e->lport = 0;
		e->rport = 0;
		__builtin_memset(e->laddr, 0, sizeof(e->laddr));
		__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	} else if (family == AF_INET) {
		__u32 l = sk->__sk_common.skc_rcv_saddr;
		__u32 r = sk->__sk_common.skc_daddr;
		__builtin_memcpy(e->laddr, &l, 4);
		__builtin_memcpy(e->raddr, &r, 4);
	} else {
		BPF_CORE_READ_INTO(&e->laddr, skp, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->raddr, skp, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* The peer of an unconnected UDP socket comes from sendto/recvfrom/msg_name: `known` when
 * the caller read it already (the port filter needed it), else read here. */
static __always_inline void peer_from_user(struct l7tap_event *e, __u64 uaddr,
					   struct user_peer *known)
{
	struct user_peer p = {};
	if (known && known->family)
		p = *known;
	else
		read_user_peer(uaddr, &p);
	if (p.family != e->family)
		return;
	e->rport = p.port;
	if (p.family == AF_INET)
		__builtin_memcpy(e->raddr, p.addr, 4);
	else if (p.family == AF_INET6)
		__builtin_memcpy(e->raddr, p.addr, 16);
}

/* The address of a msghdr's peer, 0 when it has none: no msg_name, or (after a receive, where
 * the kernel sets msg_namelen to what it wrote) one shorter than any inet sockaddr. */
static __always_inline __u64 msg_peer(struct user_msghdr *m)
{
	if (!m->msg_name || m->msg_namelen < (int)sizeof(struct sockaddr_in))
		return 0;
	return (__u64)m->msg_name;
}

static __always_inline struct conn_state *conn_get(__u64 sk, __u8 *created)
{
	struct conn_state *st = bpf_map_lookup_elem(&conns, &sk);
	if (st)
		return st;
	struct conn_state fresh = {};
	bpf_map_update_elem(&conns, &sk, &fresh, BPF_NOEXIST);
	*created = 1;
	return bpf_map_lookup_elem(&conns, &sk);
}

static __always_inline struct scratch *scratch_get(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&scratch_map, &cpu);
}

/* Writes header + cap_len bytes; counts a full ring. */
static __always_inline void submit(struct l7tap_config *cfg, struct scratch *s)
{
	/* cap_len <= SNAP_MAX already; the mask is what the verifier can follow. */
	__u64 cap = s->hdr.cap_len;
	opaque(cap);
	__u64 size = sizeof(struct l7tap_event) + (cap & (2 * SNAP_MAX - 1));
	__u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&rings, &cpu);
	/* The reader is woken when a batch is ready, or at once for a program or TLS library to
	 * probe (before it gets far); everything else waits for its poll tick (20 ms): a wakeup
	 * per process exit cost a busy host's l7tap ~10 us of CPU per program started. */
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (ring && (bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) + size >= cfg->wakeup_bytes ||
		     s->hdr.kind == EV_EXEC || s->hdr.kind == EV_MAPPED))
		flags = BPF_RB_FORCE_WAKEUP;
	/* No ring for this CPU (user space creates one per CPU online when it starts; a CPU
	 * brought online later has none): lost, and counted. */
	if (!ring || bpf_ringbuf_output(ring, s, size, flags)) {
		stat_add(ST_RING_FULL, 1);
		stat_add(ST_RING_FULL_BYTES, s->hdr.total_len);
		return;
	}
	stat_add(ST_EVENTS, 1);
	if (s->hdr.kind == EV_DATA)
		stat_add(ST_BYTES, s->hdr.cap_len);
}

/* A Unix socket name (sun_path bytes, without the family) into dst; returns its length. */
static __always_inline __u16 unix_name_read(struct unix_address *a, __u8 *dst)
{
	if (!a)
		return 0;
	struct unix_address *ua = bpf_core_cast(a, struct unix_address);
	__u32 n = ua->len;
	if (n <= sizeof(__kernel_sa_family_t))
		return 0;
	n -= sizeof(__kernel_sa_family_t);
	/* At most sun_path's 108; the mask is the bound the verifier can follow (a slot is
	 * 128 bytes). */
	if (n > UNIX_NAME_LEN)
		n = UNIX_NAME_LEN;
	opaque(n);
	n &= UNIX_NAME_SLOT - 1;
	if (!n || bpf_probe_read_kernel(dst, n, ua->name[0].sun_path))
		return 0;
	return n;
}

/* Before a Unix socket's first open or data event: its own name and its peer's (the server
 * is the side with a name; user space names the flow by it). `like` is that event's header,
 * filled already. Into the same CPU's ring, so it arrives first. */
static __always_inline void unix_names_emit(struct l7tap_event *like, struct sock *sk)
{
	__u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&rings, &cpu);
	struct l7tap_unix_names *n =
		ring ? bpf_ringbuf_reserve(ring, sizeof(struct l7tap_unix_names), 0) : NULL;
	if (!n) {
		stat_add(ST_RING_FULL, 1);
		return;
	}
	n->hdr = *like;
	n->hdr.kind = EV_UNIX_NAMES;
	n->hdr.flags = 0;
	n->hdr.offset = 0;
	n->hdr.total_len = sizeof(n->names);
	n->hdr.cap_len = sizeof(n->names);
	__builtin_memset(n->names, 0, sizeof(n->names));
	struct unix_sock *u = bpf_core_cast(sk, struct unix_sock);
	n->hdr.lport = unix_name_read(u->addr, n->names);
	n->hdr.rport = 0;
	struct sock *peer = u->peer;
	if (peer)
		n->hdr.rport = unix_name_read(bpf_core_cast(peer, struct unix_sock)->addr,
					      n->names + UNIX_NAME_SLOT);
	bpf_ringbuf_submit(n, BPF_RB_NO_WAKEUP);
}

/* The process an event belongs to, when that is not the current task: an io_uring request
 * may complete in one of the process's kernel workers (iou-wrk-*, iou-sqp-*); its submitter
 * is reported. */
struct who {
	__u64 pid_tgid;
	char comm[16];
};

static __always_inline void header_init(struct l7tap_event *e, __u64 sk, __u32 fd, __u8 kind,
					struct who *who)
{
	__u64 id = who ? who->pid_tgid : bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->sock_id = sk;
	e->offset = 0;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->fd = fd;
	e->total_len = 0;
	e->cap_len = 0;
	e->kind = kind;
	e->dir = 0;
	e->syscall = 0;
	e->flags = 0;
	e->role = 0;
	if (who)
		__builtin_memcpy(e->comm, who->comm, sizeof(e->comm));
	else
		bpf_get_current_comm(&e->comm, sizeof(e->comm));
}

struct iov_walk {
	__u64 iov;
	__u64 cnt;
	__u32 want;
	__u32 copied;
};

/* bpf_loop body: one iovec. The verifier checks it once, not once per iteration and call
 * site, which keeps the program far below the complexity limit. */
static long iov_step(__u32 i, void *data)
{
	struct iov_walk *w = data;
	if (i >= w->cnt || w->copied >= w->want)
		return 1;
	struct scratch *s = scratch_get();
	if (!s)
		return 1;
	struct iovec v = {};
	if (bpf_probe_read_user(&v, sizeof(v), &((struct iovec *)w->iov)[i]))
		return 1;
	__u64 n = v.iov_len;
	__u32 room = w->want - w->copied;
	if (n > room)
		n = room;
	if (n > SNAP_MAX)
		n = SNAP_MAX;
	if (n == 0)
		return 0;
	__u32 at = w->copied & (SNAP_MAX - 1);
	if (bpf_probe_read_user(&s->data[at], n, v.iov_base))
		return 1;
	w->copied += n;
	return 0;
}

/* Copies up to `want` bytes from an iovec array into the scratch; returns bytes copied. */
static __always_inline __u32 copy_iov(__u64 iov_ptr, __u64 cnt, __u32 want)
{
	struct iov_walk w = { .iov = iov_ptr, .cnt = cnt, .want = want, .copied = 0 };
	bpf_loop(MAX_IOV, iov_step, &w, 0);
	if (cnt > MAX_IOV && w.copied < want)
		stat_add(ST_IOV_CUT, 1);
	return w.copied;
}

/* Copies the payload (kind, ptr, count: up to the snaplen) after the header in `s`, flags and
 * counts what could not be copied, and submits the event. */
static __always_inline void payload_submit(struct l7tap_config *cfg, struct scratch *s, __u8 kind,
					   __u64 ptr, __u64 count, __u64 total, __u32 snaplen,
					   int tls)
{
	struct l7tap_event *e = &s->hdr;
	__u32 want = total < snaplen ? total : snaplen;
	if (kind == K_NONE)
		want = 0;
	if (want > SNAP_MAX)
		want = SNAP_MAX;
	__u32 got = 0;
	if (kind == K_BUF) {
		/* want <= SNAP_MAX; the mask is the bound the verifier can see */
		__u32 n = want;
		opaque(n);
		n &= 2 * SNAP_MAX - 1;
		if (n && bpf_probe_read_user(s->data, n, (void *)ptr) == 0)
			got = n;
	} else if (kind == K_IOV) {
		got = copy_iov(ptr, count, want);
	} else if (kind == K_NONE) {
		e->flags |= F_NOT_COPIED;
	}
	if (got < want) {
		e->flags |= F_READ_FAULT;
		stat_add(ST_READ_FAULT, 1);
	}
	e->cap_len = got;
	if (got < total && kind != K_NONE) {
		e->flags |= F_TRUNCATED;
		stat_add(ST_TRUNCATED, 1);
		stat_add(ST_TRUNCATED_BYTES, total - got);
	}
	if (tls)
		stat_add(ST_TLS_EVENTS, 1);
	submit(cfg, s);
}

/* Fills and submits one data event of `total` bytes whose payload is described by
 * (kind, ptr, count). */
static __always_inline void emit_data(struct l7tap_config *cfg, struct scratch *s, __u64 sk,
				      __u32 fd, __u8 dir, __u8 sc, __u8 kind, __u64 ptr, __u64 count,
				      __u64 uaddr, struct user_peer *peer, __u64 total, __u32 snaplen,
				      int tls, struct conn_state *st, struct who *who)
{
	struct l7tap_event *e = &s->hdr;
	header_init(e, sk, fd, EV_DATA, who);
	e->dir = dir;
	e->syscall = sc;
	e->total_len = total;
	struct sock *k = (struct sock *)sk;
	fill_addrs(e, k);
	if (e->sotype == SOCK_DGRAM)
		peer_from_user(e, uaddr, peer);

	/* The caller's lookup, if it made one that found the state. */
	if (!st) {
		__u8 created = 0;
		st = conn_get(sk, &created);
		if (created) {
			e->flags |= F_NEW_STATE;
			if (e->family == AF_UNIX)
				unix_names_emit(e, k);
		}
	}
	if (st) {
		e->role = st->role;
		if (tls) {
			e->offset = st->tls_off[dir & 1];
			st->tls_off[dir & 1] += total;
		} else {
			e->offset = st->off[dir & 1];
			st->off[dir & 1] += total;
		}
	}
	if (tls)
		e->flags |= F_TLS;
	payload_submit(cfg, s, kind, ptr, count, total, snaplen, tls);
}

/* ---- data syscalls ---------------------------------------------------------------- */

/* One sendmmsg/recvmmsg batch (plain values only: the body looks its pointers up). */
struct mmsg_walk {
	__u64 mm;
	__u64 n;
	__u64 skid;
	__u32 fd;
	__u32 snap;
	__u8 dir;
	__u8 sc;
};

/* bpf_loop body: message j of the batch. */
static long mmsg_step(__u32 j, void *data)
{
	struct mmsg_walk *w = data;
	if (j >= w->n)
		return 1;
	struct l7tap_config *cfg = get_config();
	struct scratch *s = scratch_get();
	if (!cfg || !s)
		return 1;
	struct mmsghdr h = {};
	if (bpf_probe_read_user(&h, sizeof(h), &((struct mmsghdr *)w->mm)[j]))
		return 1;
	emit_data(cfg, s, w->skid, w->fd, w->dir, w->sc, K_IOV, (__u64)h.msg_hdr.msg_iov,
		  h.msg_hdr.msg_iovlen, msg_peer(&h.msg_hdr), NULL, h.msg_len, w->snap, 0, NULL,
		  NULL);
	return 0;
}

/* A data syscall that returned `ret`, with its arguments read back from the user registers
 * saved at syscall entry (x86_64: di, si, dx, r10, r8, r9; the kernel leaves them intact).
 * Payload buffers are read now: for receives they hold what arrived, for sends what was sent
 * (a thread cannot change its own buffer during its own syscall). */
static __always_inline int data_exit(long ret, __u8 kind, __u8 dir, __u8 sc)
{
	if (ret <= 0)
		return 0;
	struct l7tap_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (pid_filtered(cfg, id >> 32)) {
		stat_add(ST_FILTERED_PID, 1);
		return 0;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	__u32 fd = regs->di;
	__u64 ptr = regs->si;
	__u64 count = (kind == K_IOV || kind == K_MMSG) ? regs->dx : 0;
	/* sendto/recvfrom: the sockaddr (5th argument). Other syscalls have no 5th argument:
	 * r8 then holds whatever the caller left there, not an address. */
	__u64 addr = (sc == SC_SENDTO || sc == SC_RECVFROM) ? regs->r8 : 0;
	/* recvfrom with a NULL addrlen (6th argument) leaves src_addr unwritten. */
	if (sc == SC_RECVFROM && !regs->r9)
		addr = 0;
	struct sock *sk = NULL;
	if (sc == SC_SPLICE) {
		/* splice(fd_in, off_in, fd_out, off_out, len, flags): one end is a pipe. Into a
		 * socket it is a send, out of one a receive; either way the bytes never were in
		 * user memory: reported as moved, not copied (a gap the parsers skip by length,
		 * at this syscall's time), so the stream's offsets stay true. */
		sk = sock_of_fd(task, (__u32)regs->dx, cfg->unix_sockets);
		if (sk) {
			fd = regs->dx;
			dir = DIR_EGRESS;
		} else {
			dir = DIR_INGRESS;
		}
	}
	if (!sk)
		sk = sock_of_fd(task, fd, cfg->unix_sockets);
	if (!sk) {
		stat_add(ST_NOT_SOCKET, 1);
		return 0;
	}
	/* A receive with MSG_PEEK leaves the bytes queued: the next receive returns them again
	 * (nginx peeks at a new connection's first byte to tell TLS from plain HTTP). Reporting
	 * them would put them in the stream twice. Flags: recvfrom's and recvmmsg's 4th
	 * argument (r10), recvmsg's 3rd (dx). */
	if (sc == SC_RECVFROM || sc == SC_RECVMSG || sc == SC_RECVMMSG) {
		__u64 rflags = sc == SC_RECVMSG ? regs->dx : regs->r10;
		if (rflags & MSG_PEEK) {
			stat_add(ST_PEEKED, 1);
			return 0;
		}
	}
	/* Port filter first: it is what rejects most syscalls. Unconnected UDP: the peer is in
	 * the call, not in the socket: the destination of sendto/sendmsg, the source of
	 * recvfrom/recvmsg (the kernel has written it when the syscall exits). A read(2) on an
	 * unconnected socket names no peer and passes on the local port alone. The peer is read
	 * once, here when the filter needs it, and reused for the event. */
	struct user_peer peer = {};
	struct user_msghdr m = {}; /* sendmsg/recvmsg: read once, when first needed */
	int have_m = 0;
	if (cfg->port_filter) {
		struct sock *k = bpf_core_cast(sk, struct sock);
		if (!k->__sk_common.skc_dport) {
			if (kind == K_BUF) {
				read_user_peer(addr, &peer);
			} else if (kind == K_MSG) {
				/* The whole header: the event needs its iovecs too. */
				if (bpf_probe_read_user(&m, sizeof(m), (void *)ptr) == 0) {
					have_m = 1;
					read_user_peer(msg_peer(&m), &peer);
				}
			}
		}
	}
	__u32 snap = snaplen_for_peer(cfg, sk, peer.family ? peer.port : 0);
	if (!snap) {
		stat_add(ST_FILTERED_PORT, 1);
		/* Inside a TLS library's call: its plaintext is filtered out with its socket (not
		 * reported unbound, where user space could tie it to another connection of the
		 * thread), and so are the calls served from the library's buffer later. */
		if (cfg->tls_probes) {
			struct ssl_call *in_call = bpf_map_lookup_elem(&ssl_active, &id);
			if (in_call) {
				__u64 filtered = SK_FILTERED;
				in_call->sk = SK_FILTERED;
				bpf_map_update_elem(&ssl_socks, &in_call->ssl, &filtered, BPF_ANY);
			}
		}
		return 0;
	}
	/* Inside SSL_read/SSL_write: this is ciphertext; remember the socket for the SSL
	 * call and report nothing (the uretprobe reports the plaintext). */
	__u64 skid = (__u64)sk;
	struct ssl_call *sc_ssl =
		cfg->tls_probes ? bpf_map_lookup_elem(&ssl_active, &id) : NULL;
	if (sc_ssl) {
		sc_ssl->sk = skid;
		__u8 created = 0;
		struct conn_state *st = conn_get(skid, &created);
		if (st)
			st->tls = 1;
		bpf_map_update_elem(&ssl_socks, &sc_ssl->ssl, &skid, BPF_ANY);
		stat_add(ST_CIPHER_SUPPRESSED, 1);
		return 0;
	}
	struct conn_state *known = bpf_map_lookup_elem(&conns, &skid);
	if (known && known->tls) {
		/* Handshake tail, alerts, close_notify of a TLS connection. */
		stat_add(ST_CIPHER_SUPPRESSED, 1);
		return 0;
	}
	struct scratch *s = scratch_get();
	if (!s)
		return 0;

	if (kind == K_MSG) {
		if (!have_m && bpf_probe_read_user(&m, sizeof(m), (void *)ptr)) {
			stat_add(ST_READ_FAULT, 1);
			return 0;
		}
		emit_data(cfg, s, skid, fd, dir, sc, K_IOV, (__u64)m.msg_iov, m.msg_iovlen,
			  msg_peer(&m), &peer, ret, snap, 0, known, NULL);
		return 0;
	}
	if (kind == K_MMSG) {
		/* ret = number of messages; each has its own length and peer. A bpf_loop, so
		 * that a batch of any size the kernel allows (UIO_MAXIOV) costs one check of the
		 * body by the verifier. */
		struct mmsg_walk w = { .mm = ptr, .n = ret, .skid = skid, .fd = fd, .snap = snap,
				       .dir = dir, .sc = sc };
		bpf_loop(MAX_MMSG, mmsg_step, &w, 0);
		if (ret > MAX_MMSG)
			stat_add(ST_MMSG_CUT, ret - MAX_MMSG);
		return 0;
	}
	emit_data(cfg, s, skid, fd, dir, sc, kind, ptr, count, addr, &peer, ret, snap, 0, known,
		  NULL);
	return 0;
}

#define ARG(i) (ctx->args[i])

/* The data syscalls: (syscall, payload kind, direction, syscall id). */
#define DATA_PROG(name, kind, dir, sc)                                    \
	SEC("tracepoint/syscalls/sys_exit_" #name)                        \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)             \
	{ return data_exit(ctx->ret, kind, dir, sc); }
DATA_PROG(write, K_BUF, DIR_EGRESS, SC_WRITE)
DATA_PROG(writev, K_IOV, DIR_EGRESS, SC_WRITEV)
DATA_PROG(sendto, K_BUF, DIR_EGRESS, SC_SENDTO)
DATA_PROG(sendmsg, K_MSG, DIR_EGRESS, SC_SENDMSG)
DATA_PROG(sendmmsg, K_MMSG, DIR_EGRESS, SC_SENDMMSG)
DATA_PROG(sendfile64, K_NONE, DIR_EGRESS, SC_SENDFILE)
DATA_PROG(splice, K_NONE, DIR_EGRESS, SC_SPLICE) /* direction: the socket's end, see data_exit */
DATA_PROG(read, K_BUF, DIR_INGRESS, SC_READ)
DATA_PROG(readv, K_IOV, DIR_INGRESS, SC_READV)
DATA_PROG(recvfrom, K_BUF, DIR_INGRESS, SC_RECVFROM)
DATA_PROG(recvmsg, K_MSG, DIR_INGRESS, SC_RECVMSG)
DATA_PROG(recvmmsg, K_MMSG, DIR_INGRESS, SC_RECVMMSG)

/* ---- lifecycle -------------------------------------------------------------------- */

static __always_inline int life_enter(__u32 fd, __u8 sc)
{
	struct l7tap_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (pid_filtered(cfg, id >> 32))
		return 0;
	struct lifecycle_call c = { .fd = fd, .sc = sc };
	bpf_map_update_elem(&lifecycle, &id, &c, BPF_ANY);
	return 0;
}

static __always_inline void announce(struct l7tap_config *cfg, struct sock *sk, __u32 fd,
				     __u8 role, __u8 sc, struct who *who)
{
	__u64 skid = (__u64)sk;
	/* A reused socket address starts a new connection: fresh offsets. */
	struct conn_state fresh = { .role = role };
	bpf_map_update_elem(&conns, &skid, &fresh, BPF_ANY);
	if (!snaplen_for(cfg, sk))
		return;
	struct scratch *s = scratch_get();
	if (!s)
		return;
	header_init(&s->hdr, skid, fd, EV_OPEN, who);
	s->hdr.role = role;
	s->hdr.syscall = sc;
	fill_addrs(&s->hdr, sk);
	if (s->hdr.family == AF_UNIX)
		unix_names_emit(&s->hdr, sk);
	submit(cfg, s);
}

static __always_inline int life_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct lifecycle_call *cp = bpf_map_lookup_elem(&lifecycle, &id);
	if (!cp)
		return 0;
	struct lifecycle_call c = *cp;
	bpf_map_delete_elem(&lifecycle, &id);
	struct l7tap_config *cfg = get_config();
	if (!cfg)
		return 0;
	if (c.sc == SC_CONNECT) {
		if (ret != 0 && ret != -EINPROGRESS)
			return 0;
		struct sock *sk = sock_of_fd(bpf_get_current_task_btf(), c.fd, cfg->unix_sockets);
		if (sk)
			announce(cfg, sk, c.fd, ROLE_CLIENT, SC_CONNECT, NULL);
	} else {
		if (ret < 0)
			return 0;
		struct sock *sk = sock_of_fd(bpf_get_current_task_btf(), (__u32)ret, cfg->unix_sockets);
		if (sk)
			announce(cfg, sk, (__u32)ret, ROLE_SERVER, SC_ACCEPT, NULL);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{ return life_enter(ARG(0), SC_CONNECT); }
SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{ return life_exit(ctx->ret); }
SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(struct trace_event_raw_sys_enter *ctx)
{ return life_enter(ARG(0), SC_ACCEPT); }
SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{ return life_exit(ctx->ret); }
SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct trace_event_raw_sys_enter *ctx)
{ return life_enter(ARG(0), SC_ACCEPT); }
SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{ return life_exit(ctx->ret); }

/* The socket behind fd is being closed: forget its state and report the close, if it was
 * ever reported. */
static __always_inline void close_fd(__u32 fd)
{
	struct l7tap_config *cfg = get_config();
	if (!cfg)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	if (pid_filtered(cfg, id >> 32))
		return;
	struct sock *sk = sock_of_fd(bpf_get_current_task_btf(), fd, cfg->unix_sockets);
	if (!sk)
		return;
	__u64 skid = (__u64)sk;
	struct conn_state *st = bpf_map_lookup_elem(&conns, &skid);
	if (!st)
		return; /* never reported: nothing to close */
	bpf_map_delete_elem(&conns, &skid);
	struct scratch *s = scratch_get();
	if (!s)
		return;
	header_init(&s->hdr, skid, fd, EV_CLOSE, NULL);
	s->hdr.syscall = SC_CLOSE;
	fill_addrs(&s->hdr, sk);
	submit(cfg, s);
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	close_fd(ARG(0));
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int process_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&lifecycle, &id);
	bpf_map_delete_elem(&ssl_active, &id);
	if ((id >> 32) != (__u32)id)
		return 0; /* a thread, not the process */
	struct l7tap_config *cfg = get_config();
	struct scratch *s = scratch_get();
	if (!cfg || !s)
		return 0;
	if (pid_filtered(cfg, id >> 32))
		return 0;
	header_init(&s->hdr, 0, 0, EV_EXIT, NULL);
	s->hdr.family = 0;
	submit(cfg, s);
	return 0;
}

/* ---- io_uring --------------------------------------------------------------------- */

/* A request on a socket moves its bytes without a data syscall: io_uring_enter submits it (or
 * an SQPOLL thread picks it up) and the kernel, inline or in one of the process's workers,
 * runs it. Two BTF tracepoints see it instead: io_uring_submit_req (the request as prepared
 * from its SQE: opcode, fd, buffer) and io_uring_complete (its result), matched by the
 * request's address. The buffer is read at completion, where it holds what was received or
 * sent (an application may not reuse it before it reaps the completion). A multishot
 * receive over provided buffers (the usual way to use them) names the buffer picked for each
 * completion in its message header (see uring_complete); its completions before the last
 * come without the request (the tracepoint's req is NULL) and are matched by (ring,
 * user_data). Where no buffer can be named (a single-shot receive into a provided buffer,
 * bundles, RECVMSG into provided buffers, zero-copy receive), the bytes are reported as moved
 * but not copied, so the stream's offsets stay true. */

#define UR_DATA 0
#define UR_ACCEPT 1
#define UR_CONNECT 2

#define CQE_F_MORE 2 /* IORING_CQE_F_MORE: the request posts more completions */
#define PF_IO_WORKER 0x10 /* task->flags: an io_uring worker or SQ thread */

struct uring_call {
	struct who who; /* the submitter */
	__u64 sk;       /* the socket, when a plain fd named it at submit (0: a fixed file) */
	__u64 ptr;      /* buffer, iovec array or user msghdr */
	__u64 count;    /* iovecs of K_IOV */
	__u32 fd;       /* fd, or the fixed-file index */
	__u8 what;      /* UR_* */
	__u8 kind;      /* K_BUF, K_IOV, K_MSG, K_SELECT, K_NONE */
	__u8 dir;
	__u8 _pad;
};
/* request address -> call. LRU: requests whose completion is never posted (a ring torn down,
 * IOSQE_CQE_SKIP_SUCCESS) cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct uring_call);
} uring_calls SEC(".maps");

/* (ring, user_data) -> request address, for requests that may complete more than once
 * (provided-buffer receives, accept): their completions before the last come without it. */
struct aux_key {
	__u64 ring;
	__u64 user_data;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct aux_key);
	__type(value, __u64);
} uring_aux SEC(".maps");

#define RECVSEND_BUNDLE 16 /* IORING_RECVSEND_BUNDLE: several provided buffers at once */

/* Data requests: opcode -> how the payload is described (K_*) and its direction; kind 0:
 * not a data request. */
#define URING_OPS 64
struct uring_op {
	__u8 kind;
	__u8 dir;
};
static const struct uring_op uring_ops[URING_OPS] = {
	[IORING_OP_SEND] = { K_BUF, DIR_EGRESS },
	[IORING_OP_SEND_ZC] = { K_BUF, DIR_EGRESS },
	[IORING_OP_WRITE] = { K_BUF, DIR_EGRESS },
	[IORING_OP_WRITE_FIXED] = { K_BUF, DIR_EGRESS },
	[IORING_OP_RECV] = { K_BUF, DIR_INGRESS },
	[IORING_OP_READ] = { K_BUF, DIR_INGRESS },
	[IORING_OP_READ_FIXED] = { K_BUF, DIR_INGRESS },
	[IORING_OP_SENDMSG] = { K_MSG, DIR_EGRESS },
	[IORING_OP_SENDMSG_ZC] = { K_MSG, DIR_EGRESS },
	[IORING_OP_RECVMSG] = { K_MSG, DIR_INGRESS },
	[IORING_OP_WRITEV] = { K_IOV, DIR_EGRESS },
	[IORING_OP_WRITEV_FIXED] = { K_IOV, DIR_EGRESS },
	[IORING_OP_READV] = { K_IOV, DIR_INGRESS },
	[IORING_OP_READV_FIXED] = { K_IOV, DIR_INGRESS },
	[IORING_OP_READ_MULTISHOT] = { K_NONE, DIR_INGRESS },
	[IORING_OP_RECV_ZC] = { K_NONE, DIR_INGRESS },
};

/* The socket behind a fixed-file slot, found through the ring's file table (6.13+ layout:
 * resource nodes whose file_ptr keeps flags in its two low bits). 1 when the slot could be
 * looked at (*sk: its socket, or NULL for anything else), 0 on kernels with another layout:
 * the request's file is then looked at when it completes. Looking here keeps file I/O on
 * registered files out of the request map. */
#define FFS_MASK 3UL
static __always_inline int fixed_file_sock(struct io_kiocb *req, __u32 slot, struct sock **sk,
					   __u32 want_unix)
{
	struct io_ring_ctx *ctx = req->ctx;
	if (!bpf_core_field_exists(ctx->file_table.data.nodes) ||
	    !bpf_core_field_exists(struct io_rsrc_node, file_ptr))
		return 0;
	*sk = NULL;
	if (slot >= ctx->file_table.data.nr)
		return 1;
	struct io_rsrc_node **nodes = ctx->file_table.data.nodes;
	struct io_rsrc_node *node = NULL;
	if (bpf_probe_read_kernel(&node, sizeof(node), &nodes[slot]) || !node)
		return 1;
	unsigned long fp = bpf_core_cast(node, struct io_rsrc_node)->file_ptr;
	*sk = sock_of_file((struct file *)(fp & ~FFS_MASK), want_unix);
	return 1;
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(uring_submit, struct io_kiocb *req)
{
	__u8 op = req->opcode;
	struct uring_call c = {};
	switch (op) {
	case IORING_OP_ACCEPT:
		c.what = UR_ACCEPT;
		break;
	case IORING_OP_CONNECT:
		c.what = UR_CONNECT;
		break;
	case IORING_OP_CLOSE: {
		/* Still open at submit: the socket can be found, as for close(2). */
		struct io_close *cl = bpf_core_cast(req, struct io_close);
		if (!cl->file_slot)
			close_fd(cl->fd);
		return 0;
	}
	default: {
		__u32 i = op & (URING_OPS - 1);
		c.kind = uring_ops[i].kind;
		c.dir = uring_ops[i].dir;
		if (op >= URING_OPS || !c.kind)
			return 0;
	}
	}
	struct l7tap_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (pid_filtered(cfg, id >> 32)) {
		if (c.what == UR_DATA)
			stat_add(ST_FILTERED_PID, 1);
		return 0;
	}
	__u64 rflags = req->flags;
	c.fd = req->cqe.fd; /* the SQE's fd until the file is assigned at issue */
	int fixed = (rflags & (1ULL << REQ_F_FIXED_FILE_BIT)) != 0;
	int known = 0;
	struct sock *sk = NULL;
	if (!fixed) {
		sk = sock_of_fd(bpf_get_current_task_btf(), c.fd, cfg->unix_sockets);
		known = 1;
	} else {
		known = fixed_file_sock(req, c.fd, &sk, cfg->unix_sockets);
	}
	if (known) {
		if (!sk) {
			if (c.what == UR_DATA)
				stat_add(ST_NOT_SOCKET, 1);
			return 0;
		}
		if (c.what == UR_DATA && !snaplen_for(cfg, sk)) {
			stat_add(ST_FILTERED_PORT, 1);
			return 0;
		}
		c.sk = (__u64)sk;
	}
	if (c.what == UR_ACCEPT) {
		/* Into a fixed-file slot: no fd to find the new socket by. Its data is still
		 * seen, as a connection picked up on its first data. */
		struct io_accept *a = bpf_core_cast(req, struct io_accept);
		if (a->file_slot)
			return 0;
	} else if (c.what == UR_DATA) {
		if (rflags & (1ULL << REQ_F_BUFFER_SELECT_BIT)) {
			/* A RECV of one buffer at a time may name it at completion (see there). */
			struct io_sr_msg *sr = bpf_core_cast(req, struct io_sr_msg);
			if (op == IORING_OP_RECV && !(sr->flags & RECVSEND_BUNDLE))
				c.kind = K_SELECT;
			else
				c.kind = K_NONE;
		} else if (op == IORING_OP_SEND || op == IORING_OP_SEND_ZC || op == IORING_OP_RECV ||
			   op == IORING_OP_SENDMSG || op == IORING_OP_SENDMSG_ZC ||
			   op == IORING_OP_RECVMSG) {
			struct io_sr_msg *sr = bpf_core_cast(req, struct io_sr_msg);
			if (c.dir == DIR_INGRESS && (sr->msg_flags & MSG_PEEK)) {
				stat_add(ST_PEEKED, 1);
				return 0;
			}
			c.ptr = (__u64)sr->buf;
		} else if (c.kind != K_NONE) {
			struct io_rw *rw = bpf_core_cast(req, struct io_rw);
			c.ptr = rw->addr;
			c.count = rw->len;
		}
	}
	c.who.pid_tgid = id;
	/* Under IORING_SETUP_SQPOLL the process's SQ thread (iou-sqp-PID) submits: report the
	 * process's name. */
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->flags & PF_IO_WORKER)
		bpf_probe_read_kernel(c.who.comm, sizeof(c.who.comm), task->group_leader->comm);
	else
		bpf_get_current_comm(c.who.comm, sizeof(c.who.comm));
	__u64 key = (__u64)req;
	bpf_map_update_elem(&uring_calls, &key, &c, BPF_ANY);
	if (c.kind == K_SELECT || c.kind == K_NONE || c.what == UR_ACCEPT) {
		struct aux_key ak = { .ring = (__u64)req->ctx, .user_data = req->cqe.user_data };
		bpf_map_update_elem(&uring_aux, &ak, &key, BPF_ANY);
	}
	return 0;
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(uring_complete, struct io_ring_ctx *ring, void *req, struct io_uring_cqe *cqe)
{
	if (!cqe)
		return 0;
	struct aux_key ak = { .ring = (__u64)ring, .user_data = cqe->user_data };
	__u64 key = (__u64)req;
	if (!key) {
		/* A multishot request's completion before its last. */
		__u64 *known = bpf_map_lookup_elem(&uring_aux, &ak);
		if (!known)
			return 0;
		key = *known;
	}
	struct uring_call *cp = bpf_map_lookup_elem(&uring_calls, &key);
	if (!cp)
		return 0;
	struct uring_call c = *cp;
	__s32 res = cqe->res;
	/* A multishot receive or accept posts more completions while F_MORE is set (a
	 * zero-copy send's F_MORE announces its buffer notification, not more data). */
	int multi = c.kind == K_SELECT || c.kind == K_NONE || c.what == UR_ACCEPT;
	if (!(multi && (cqe->flags & CQE_F_MORE))) {
		bpf_map_delete_elem(&uring_calls, &key);
		if (multi)
			bpf_map_delete_elem(&uring_aux, &ak);
	}
	struct l7tap_config *cfg = get_config();
	if (!cfg)
		return 0;
	if (c.what == UR_ACCEPT) {
		if (res < 0)
			return 0;
		struct sock *sk = sock_of_fd(bpf_get_current_task_btf(), (__u32)res, cfg->unix_sockets);
		if (sk)
			announce(cfg, sk, (__u32)res, ROLE_SERVER, SC_ACCEPT, &c.who);
		return 0;
	}
	struct sock *sk = (struct sock *)c.sk;
	if (!sk) {
		struct io_kiocb *r = bpf_core_cast((void *)key, struct io_kiocb);
		sk = sock_of_file(r->file, cfg->unix_sockets);
		if (!sk) {
			if (c.what == UR_DATA)
				stat_add(ST_NOT_SOCKET, 1);
			return 0;
		}
	}
	if (c.what == UR_CONNECT) {
		if (res == 0)
			announce(cfg, sk, c.fd, ROLE_CLIENT, SC_CONNECT, &c.who);
		return 0;
	}
	if (res <= 0)
		return 0;
	__u32 snap = snaplen_for(cfg, sk);
	if (!snap) {
		stat_add(ST_FILTERED_PORT, 1);
		return 0;
	}
	__u64 skid = (__u64)sk;
	struct conn_state *known = bpf_map_lookup_elem(&conns, &skid);
	if (known && known->tls) {
		stat_add(ST_CIPHER_SUPPRESSED, 1);
		return 0;
	}
	struct scratch *s = scratch_get();
	if (!s)
		return 0;
	stat_add(ST_URING_EVENTS, 1);
	__u8 kind = c.kind;
	__u64 ptr = c.ptr, count = c.count, uaddr = 0;
	if (kind == K_NONE) {
		stat_add(ST_URING_NOT_COPIED, 1);
	} else if (kind == K_SELECT) {
		/* A multishot receive keeps its message header until its last completion, and
		 * posts each completion before it picks the next buffer: the one picked for this
		 * completion is the base of the header's iterator (a user-buffer iterator moves
		 * its offset, not its base). A single-shot receive has handed its header back by
		 * the time its completion is posted (and clears io_sr_msg.buf): not copied. */
		struct io_kiocb *r = bpf_core_cast((void *)key, struct io_kiocb);
		struct io_async_msghdr *am = NULL;
		if (r->flags & (1ULL << REQ_F_ASYNC_DATA_BIT))
			am = bpf_core_cast(r->async_data, struct io_async_msghdr);
		if (am && am->msg.msg_iter.iter_type == bpf_core_enum_value(enum iter_type, ITER_UBUF)) {
			kind = K_BUF;
			ptr = (__u64)am->msg.msg_iter.ubuf;
		} else {
			kind = K_NONE;
			stat_add(ST_URING_NOT_COPIED, 1);
		}
	} else if (kind == K_MSG) {
		/* A msghdr that cannot be read: the event still goes out (count 0), flagged as a
		 * read fault, so the stream's offsets stay true. */
		struct user_msghdr m = {};
		kind = K_IOV;
		count = 0;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)c.ptr) == 0) {
			ptr = (__u64)m.msg_iov;
			count = m.msg_iovlen;
			uaddr = msg_peer(&m);
		}
	}
	emit_data(cfg, s, skid, c.fd, c.dir, SC_IO_URING, kind, ptr, count, uaddr, NULL, res, snap,
		  0, known, &c.who);
	return 0;
}

/* A file's identity as user space knows it (known_files); 0 when there is no file. */
static __always_inline int file_key_of(struct file *fp, struct file_key *k)
{
	if (!fp)
		return 0;
	struct inode *ino = bpf_core_cast(fp, struct file)->f_inode;
	if (!ino)
		return 0;
	struct super_block *sb = ino->i_sb;
	k->dev = sb ? sb->s_dev : 0;
	k->ino = ino->i_ino;
	return 1;
}

/* A new program: user space looks at its binary (Go's crypto/tls, OpenSSL linked in) unless it
 * has already. Attached while TLS or Go TLS probing is on. */
SEC("tracepoint/sched/sched_process_exec")
int process_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct l7tap_config *cfg = get_config();
	struct scratch *s = scratch_get();
	if (!cfg || !s)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (pid_filtered(cfg, id >> 32))
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	struct file_key k = {};
	if (!mm || !file_key_of(mm->exe_file, &k))
		return 0;
	if (bpf_map_lookup_elem(&known_files, &k)) {
		stat_add(ST_EXEC_KNOWN, 1);
		return 0;
	}
	header_init(&s->hdr, k.ino, 0, EV_EXEC, NULL);
	s->hdr.offset = k.dev;
	s->hdr.family = 0;
	/* The filename given to execve: user space's way to the file when the process is gone
	 * before it looks (a program that runs for a millisecond). */
	__u32 loc = ctx->__data_loc_filename & 0xFFFF;
	long n = bpf_probe_read_kernel_str(s->data, EXEC_PATH_LEN, (void *)ctx + loc);
	s->hdr.cap_len = n > 0 ? n : 0;
	s->hdr.total_len = s->hdr.cap_len;
	submit(cfg, s);
	return 0;
}

/* 1 when `name` starts with the n bytes of `prefix`. */
static __always_inline int has_prefix(const char *name, const char *prefix, int n)
{
	int same = 1;
#pragma unroll
	for (int i = 0; i < n; i++)
		same &= name[i] == prefix[i];
	return same;
}
#define HAS_PREFIX(name, lit) has_prefix(name, lit, sizeof(lit) - 1)

/* 1 when a file name (read into `name`) may be a TLS library's: libssl*, libgnutls* or
 * libnspr4* (user space decides, by the path the process sees, which files and versions it
 * probes). */
static __always_inline int tls_library_name(const char *name)
{
	return HAS_PREFIX(name, "libssl") | HAS_PREFIX(name, "libgnutls") |
	       HAS_PREFIX(name, "libnspr4");
}

#define PROT_EXEC 4
#define MAP_ANONYMOUS 0x20

/* A process mapped code from a file (the dynamic loader does so for every library, at start
 * and at each dlopen): a TLS library not looked at yet is reported, so user space probes it
 * whenever it is loaded and from wherever (a container's own libssl, a bundled copy found
 * through LD_LIBRARY_PATH, a dlopen long after the program started). Attached while TLS
 * probing is on. */
SEC("tracepoint/syscalls/sys_exit_mmap")
int exit_mmap(struct trace_event_raw_sys_exit *ctx)
{
	/* An address, or -errno. */
	if ((unsigned long)ctx->ret >= (unsigned long)-4095L)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	/* mmap(addr, length, prot, flags, fd, offset); an anonymous mapping's fd is meant to be
	 * -1, but the kernel ignores it (JITs pass 0) */
	if (!(regs->dx & PROT_EXEC) || (regs->r10 & MAP_ANONYMOUS) || (long)regs->r8 < 0)
		return 0;
	struct l7tap_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (pid_filtered(cfg, id >> 32))
		return 0;
	struct file *fp = file_of_fd(task, (__u32)regs->r8);
	struct file_key k = {};
	if (!file_key_of(fp, &k))
		return 0;
	/* The name the process sees: a file bind-mounted over another (a container's libssl
	 * given as a volume) is the root of its own mount, and its name is the mount point's. */
	struct file *f = bpf_core_cast(fp, struct file);
	struct dentry *d = f->f_path.dentry;
	struct vfsmount *vm = f->f_path.mnt;
	if (vm && d == vm->mnt_root) {
		struct mount *m = bpf_core_cast((void *)vm - bpf_core_field_offset(struct mount, mnt),
						struct mount);
		d = m->mnt_mountpoint;
	}
	char name[16] = {};
	if (!d || bpf_probe_read_kernel_str(name, sizeof(name), d->d_name.name) <= 0 ||
	    !tls_library_name(name))
		return 0;
	if (bpf_map_lookup_elem(&known_files, &k)) {
		stat_add(ST_MAPPED_KNOWN, 1);
		return 0;
	}
	struct scratch *s = scratch_get();
	if (!s)
		return 0;
	header_init(&s->hdr, k.ino, 0, EV_MAPPED, NULL);
	s->hdr.offset = k.dev;
	s->hdr.family = 0;
	submit(cfg, s);
	return 0;
}

/* ---- OpenSSL ---------------------------------------------------------------------- */

static __always_inline int ssl_enter_ex(__u64 ssl, __u64 buf, __u64 out_len, __u8 dir,
					__u8 sc, __u8 socket_only)
{
	struct l7tap_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (pid_filtered(cfg, id >> 32))
		return 0;
	struct ssl_call c = { .ssl = ssl, .buf = buf, .out_len = out_len, .dir = dir, .sc = sc,
			      .socket_only = socket_only };
	bpf_map_update_elem(&ssl_active, &id, &c, BPF_ANY);
	return 0;
}

static __always_inline int ssl_enter(__u64 ssl, __u64 buf, __u64 out_len, __u8 dir, __u8 sc)
{
	return ssl_enter_ex(ssl, buf, out_len, dir, sc, 0);
}

/* An SSL call's plaintext whose socket is not known (F_TLS_UNBOUND): no socket, no
 * addresses; `offset` carries the SSL's address (the key user space binds it by). Not subject
 * to the port filter (no port is known); user space drops what it cannot bind. */
static __always_inline void emit_unbound(struct l7tap_config *cfg, struct scratch *s,
					 struct ssl_call *c, __u64 n)
{
	struct l7tap_event *e = &s->hdr;
	header_init(e, 0, 0, EV_DATA, NULL);
	e->dir = c->dir;
	e->syscall = c->sc;
	e->total_len = n;
	e->offset = c->ssl;
	e->flags = F_TLS | F_TLS_UNBOUND;
	e->family = 0;
	e->lport = 0;
	e->rport = 0;
	e->sotype = SOCK_STREAM;
	__builtin_memset(e->laddr, 0, sizeof(e->laddr));
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	payload_submit(cfg, s, K_BUF, c->buf, 0, n, cfg->snaplen ? cfg->snaplen : 1, 1);
}

/* ex: the _ex variants return 1/0 and write the byte count through out_len. */
static __always_inline int ssl_exit(long ret, int ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *cp = bpf_map_lookup_elem(&ssl_active, &id);
	if (!cp)
		return 0;
	struct ssl_call c = *cp;
	bpf_map_delete_elem(&ssl_active, &id);
	__u64 n = 0;
	if (ex) {
		if (ret != 1 || !c.out_len)
			return 0;
		if (bpf_probe_read_user(&n, sizeof(n), (void *)c.out_len))
			return 0;
	} else {
		if (ret <= 0)
			return 0;
		n = ret;
	}
	if (!n)
		return 0;
	__u64 sk = c.sk;
	if (!sk) {
		/* No syscall inside this call (buffered read): the SSL's last socket. */
		__u64 *known = bpf_map_lookup_elem(&ssl_socks, &c.ssl);
		if (known)
			sk = *known;
	}
	struct l7tap_config *cfg = get_config();
	struct scratch *s = scratch_get();
	if (!cfg || !s)
		return 0;
	if (sk == SK_FILTERED) {
		stat_add(ST_FILTERED_PORT, 1);
		return 0;
	}
	if (!sk && c.socket_only) {
		/* An NSPR socket call whose socket is not known yet (NSS has no memory BIOs:
		 * nothing to report unbound). */
		stat_add(ST_NSPR_NO_SOCKET, 1);
		return 0;
	}
	if (!sk) {
		/* No socket I/O inside any call of this SSL: a memory BIO (Python's asyncio,
		 * Node.js, ...), whose ciphertext the program moves itself. Reported unbound:
		 * user space ties it to the socket this thread moves the ciphertext on. */
		stat_add(ST_TLS_NO_SOCKET, 1);
		emit_unbound(cfg, s, &c, n);
		return 0;
	}
	struct sock *k = (struct sock *)sk;
	__u32 snap = snaplen_for(cfg, k);
	if (!snap) {
		stat_add(ST_FILTERED_PORT, 1);
		return 0;
	}
	emit_data(cfg, s, sk, 0, c.dir, c.sc, K_BUF, c.buf, 0, 0, NULL, n, snap, 1, NULL, NULL);
	return 0;
}

SEC("uprobe")
int BPF_UPROBE(ssl_write_enter, void *ssl, void *buf, int num)
{ return ssl_enter((__u64)ssl, (__u64)buf, 0, DIR_EGRESS, SC_SSL_WRITE); }
SEC("uretprobe")
int BPF_URETPROBE(ssl_write_exit, int ret)
{ return ssl_exit(ret, 0); }
SEC("uprobe")
int BPF_UPROBE(ssl_write_ex_enter, void *ssl, void *buf, size_t num, size_t *written)
{ return ssl_enter((__u64)ssl, (__u64)buf, (__u64)written, DIR_EGRESS, SC_SSL_WRITE); }
SEC("uretprobe")
int BPF_URETPROBE(ssl_write_ex_exit, int ret)
{ return ssl_exit(ret, 1); }
SEC("uprobe")
int BPF_UPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{ return ssl_enter((__u64)ssl, (__u64)buf, 0, DIR_INGRESS, SC_SSL_READ); }
SEC("uretprobe")
int BPF_URETPROBE(ssl_read_exit, int ret)
{ return ssl_exit(ret, 0); }
SEC("uprobe")
int BPF_UPROBE(ssl_read_ex_enter, void *ssl, void *buf, size_t num, size_t *readbytes)
{ return ssl_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, DIR_INGRESS, SC_SSL_READ); }
/* GnuTLS: gnutls_record_send/recv(session, data, size) return the bytes moved (ssize_t), or
 * a negative error (GNUTLS_E_AGAIN, ...). The socket is found as for OpenSSL: by the
 * syscall GnuTLS makes inside the call, else the session's last one. */
SEC("uprobe")
int BPF_UPROBE(gnutls_send_enter, void *session, void *buf, size_t size)
{ return ssl_enter((__u64)session, (__u64)buf, 0, DIR_EGRESS, SC_SSL_WRITE); }
SEC("uretprobe")
int BPF_URETPROBE(gnutls_send_exit, long ret)
{ return ssl_exit(ret, 0); }
SEC("uprobe")
int BPF_UPROBE(gnutls_recv_enter, void *session, void *buf, size_t size)
{ return ssl_enter((__u64)session, (__u64)buf, 0, DIR_INGRESS, SC_SSL_READ); }
SEC("uretprobe")
int BPF_URETPROBE(gnutls_recv_exit, long ret)
{ return ssl_exit(ret, 0); }
SEC("uretprobe")
int BPF_URETPROBE(ssl_read_ex_exit, int ret)
{ return ssl_exit(ret, 1); }
/* NSS (Mozilla's TLS: Firefox, Thunderbird, libcurl's NSS build): the application's I/O on
 * an SSL socket goes through NSPR, PR_Write/PR_Send and PR_Read/PR_Recv(fd, buf, amount, ...)
 * on the top (SSL) layer's descriptor; they return the bytes moved, or -1. The same calls
 * serve plain sockets (the bytes are then the wire's, as they should be) and files and pipes,
 * which are left out by the descriptor's type (prio.h, public: a PRFileDesc starts with its
 * methods table, which starts with the PRDescType). A socket's descriptor then behaves as an
 * SSL object: its socket is the one of a syscall inside the call, else its last one (reads
 * NSS serves from its buffer). */
#define PR_DESC_FILE 1
#define PR_DESC_PIPE 5
static __always_inline int nspr_enter(__u64 fd, __u64 buf, __u8 dir, __u8 sc)
{
	__u64 methods = 0;
	__u32 type = 0;
	if (bpf_probe_read_user(&methods, sizeof(methods), (void *)fd) ||
	    bpf_probe_read_user(&type, sizeof(type), (void *)methods))
		return 0;
	if (type == PR_DESC_FILE || type == PR_DESC_PIPE) {
		stat_add(ST_NOT_SOCKET, 1);
		return 0;
	}
	return ssl_enter_ex(fd, buf, 0, dir, sc, 1);
}
SEC("uprobe")
int BPF_UPROBE(nspr_write_enter, void *fd, void *buf, int amount)
{ return nspr_enter((__u64)fd, (__u64)buf, DIR_EGRESS, SC_SSL_WRITE); }
SEC("uretprobe")
int BPF_URETPROBE(nspr_write_exit, int ret)
{ return ssl_exit(ret, 0); }
SEC("uprobe")
int BPF_UPROBE(nspr_read_enter, void *fd, void *buf, int amount)
{ return nspr_enter((__u64)fd, (__u64)buf, DIR_INGRESS, SC_SSL_READ); }
SEC("uretprobe")
int BPF_URETPROBE(nspr_read_exit, int ret)
{ return ssl_exit(ret, 0); }

/* ---- Go crypto/tls ----------------------------------------------------------------- */

/* Go's TLS is compiled into each binary, not in a shared library. Go's register ABI (amd64,
 * Go 1.17+): the receiver and arguments in RAX, RBX, RCX, ..., results in RAX, ...; the
 * running goroutine in R14. crypto/tls.(*Conn).Write(b) is reported at its entry, where its
 * plaintext is whole and before any of it is on the wire: reported at its return it could
 * come after the answer to it (Go's HTTP client reads on another goroutine, often another
 * thread, and a fast server answers before the writing goroutine runs again). Write sends all
 * of b or fails with the connection for good. (*Conn).Read(b) is probed at its entry (b) and
 * at each of its RET instructions (n; user space finds them by decoding the function; a
 * uretprobe would rewrite a return address on a goroutine stack the Go runtime may move),
 * matched by goroutine: one parked in Read may resume on another thread. The socket comes
 * from the tls.Conn itself, through offsets stable across Go releases (the ones Pixie and
 * Beyla use): Conn.conn (a net.Conn interface, first field; its data word at +8) ->
 * *net.TCPConn (conn.fd first) -> *netFD (pfd first) -> poll.FD.Sysfd at +16 (after the
 * 16-byte fdMutex). A net.Conn of another kind (a wrapper of the application's) leads to no
 * inet socket: counted as TLS_NO_SOCKET. */
#define GO_IFACE_DATA 8
#define GO_FD_SYSFD 16

struct go_key {
	__u64 tgid;
	__u64 g;
};
struct go_tls_read {
	__u64 conn; /* *tls.Conn */
	__u64 buf;
};
/* LRU: a goroutine that never returns (its process killed mid-call) cannot fill it */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct go_key);
	__type(value, struct go_tls_read);
} go_tls_reads SEC(".maps");

/* Reports n plaintext bytes at buf of the tls.Conn at conn, and marks its socket TLS (its
 * own bytes are ciphertext from then on: not reported). */
static __always_inline void go_tls_emit(struct l7tap_config *cfg, __u64 conn, __u64 buf, long n,
				       __u8 dir, __u8 sc)
{
	__u64 data = 0, netfd = 0;
	long sysfd = -1;
	if (bpf_probe_read_user(&data, sizeof(data), (void *)(conn + GO_IFACE_DATA)) || !data ||
	    bpf_probe_read_user(&netfd, sizeof(netfd), (void *)data) || !netfd ||
	    bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(netfd + GO_FD_SYSFD)) ||
	    sysfd < 0 || sysfd > 0x7fffffff) {
		stat_add(ST_TLS_NO_SOCKET, 1);
		return;
	}
	struct sock *sk = sock_of_fd(bpf_get_current_task_btf(), (__u32)sysfd, cfg->unix_sockets);
	if (!sk) {
		stat_add(ST_TLS_NO_SOCKET, 1);
		return;
	}
	struct scratch *s = scratch_get();
	if (!s)
		return;
	__u32 snap = snaplen_for(cfg, sk);
	if (!snap) {
		stat_add(ST_FILTERED_PORT, 1);
		return;
	}
	__u64 skid = (__u64)sk;
	emit_data(cfg, s, skid, (__u32)sysfd, dir, sc, K_BUF, buf, 0, 0, NULL, n, snap, 1, NULL,
		  NULL);
	struct conn_state *st = bpf_map_lookup_elem(&conns, &skid);
	if (st)
		st->tls = 1;
}

SEC("uprobe")
int go_tls_write_enter(struct pt_regs *ctx)
{
	struct l7tap_config *cfg = get_config();
	if (!cfg || pid_filtered(cfg, bpf_get_current_pid_tgid() >> 32))
		return 0;
	long n = (long)ctx->cx; /* len(b) */
	if (n > 0)
		go_tls_emit(cfg, ctx->ax, ctx->bx, n, DIR_EGRESS, SC_GO_TLS_WRITE);
	return 0;
}

SEC("uprobe")
int go_tls_read_enter(struct pt_regs *ctx)
{
	struct l7tap_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (pid_filtered(cfg, id >> 32))
		return 0;
	struct go_key k = { .tgid = id >> 32, .g = ctx->r14 };
	struct go_tls_read c = { .conn = ctx->ax, .buf = ctx->bx };
	bpf_map_update_elem(&go_tls_reads, &k, &c, BPF_ANY);
	return 0;
}

/* At a RET of Read: n (the first result) in RAX. */
SEC("uprobe")
int go_tls_read_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_key k = { .tgid = id >> 32, .g = ctx->r14 };
	struct go_tls_read *cp = bpf_map_lookup_elem(&go_tls_reads, &k);
	if (!cp)
		return 0;
	struct go_tls_read c = *cp;
	bpf_map_delete_elem(&go_tls_reads, &k);
	long n = (long)ctx->ax;
	struct l7tap_config *cfg = get_config();
	if (n > 0 && cfg)
		go_tls_emit(cfg, c.conn, c.buf, n, DIR_INGRESS, SC_GO_TLS_READ);
	return 0;
}

