/* Shared between the BPF program (l7tap.bpf.c) and its user side (src/event.rs).
 * Every layout here is mirrored byte for byte in src/event.rs; change both together. */
#ifndef L7TAP_H
#define L7TAP_H

/* Largest payload copied from one syscall (the runtime snaplen is at most this). */
#define SNAP_MAX 16384
/* Bounded loops: iovecs per call and messages per sendmmsg/recvmmsg, both the kernel's own
 * limit (UIO_MAXIOV; each walk is a bpf_loop that stops at the call's count, so a high bound
 * costs nothing; gRPC core, for one, sends a connection's first frames as one sendmsg of ~20
 * iovecs, and DNS servers such as NSD take up to 100 datagrams per recvmmsg). */
#define MAX_IOV 1024
#define MAX_MMSG 1024

/* event.kind */
#define EV_DATA 1
#define EV_OPEN 2  /* connect/accept finished: role known */
#define EV_CLOSE 3 /* close() of a socket fd */
#define EV_EXIT 4  /* a process (thread group leader) exited */
#define EV_EXEC 5  /* a process exec'd a program not looked at yet (user space probes its Go
		    * TLS or linked-in OpenSSL): sock_id = the file's inode, offset = its device
		    * (the kernel's dev_t), payload = the filename given to execve */
#define EV_UNIX_NAMES 6 /* a Unix socket's own name and its peer's: sent before its first
			 * open or data event (struct l7tap_unix_names) */
#define EV_MAPPED 7 /* a process mapped a TLS library's code (libssl*, libgnutls*, libnspr4*)
		     * from a file not looked at yet: sock_id = inode, offset = device, as
		     * EV_EXEC */

/* The filename of an exec, at most (the rest is cut; user space then uses /proc/PID/exe). */
#define EXEC_PATH_LEN 256

/* A file user space has looked at (known_files key): the kernel's (s_dev, i_ino). */
struct file_key {
	__u64 dev;
	__u64 ino;
};

/* event.dir */
#define DIR_EGRESS 0
#define DIR_INGRESS 1

/* event.flags */
#define F_TRUNCATED 1 /* cap_len < total_len (snaplen) */
#define F_TLS 2       /* plaintext from an OpenSSL uprobe */
#define F_NEW_STATE 4 /* connection state was (re)created: offsets restart at 0 */
#define F_READ_FAULT 8 /* the payload could not be read from user memory */
#define F_NOT_COPIED 16 /* sendfile/splice: bytes moved but never in user memory */
#define F_TLS_UNBOUND 32 /* TLS plaintext whose socket the kernel could not find (a memory
			  * BIO): sock_id 0, offset = the SSL's address */

/* event.role */
#define ROLE_UNKNOWN 0
#define ROLE_CLIENT 1
#define ROLE_SERVER 2

/* syscall ids (event.syscall) */
enum l7tap_syscall {
	SC_WRITE = 1, SC_WRITEV, SC_SENDTO, SC_SENDMSG, SC_SENDMMSG,
	SC_READ, SC_READV, SC_RECVFROM, SC_RECVMSG, SC_RECVMMSG,
	SC_SENDFILE, SC_CONNECT, SC_ACCEPT, SC_CLOSE,
	SC_SSL_WRITE, SC_SSL_READ, SC_SPLICE,
	SC_IO_URING, /* a completed io_uring request (send, recv, read, write, ... on a socket) */
	SC_GO_TLS_WRITE, SC_GO_TLS_READ, /* Go's crypto/tls.(*Conn).Write / Read */
};

/* Per-CPU counters (stats map index); mirrored in src/event.rs STAT_NAMES. */
enum l7tap_stat {
	ST_EVENTS = 0,     /* events written to the ring */
	ST_BYTES,          /* socket payload bytes written to the ring */
	ST_RING_FULL,      /* events lost: ring buffer full */
	ST_RING_FULL_BYTES,/* payload bytes of those events */
	ST_READ_FAULT,     /* payload reads from user memory that failed */
	ST_TRUNCATED,      /* events cut at snaplen */
	ST_TRUNCATED_BYTES,/* bytes not copied because of snaplen */
	ST_FILTERED_PID,   /* data syscalls dropped by the pid filter */
	ST_FILTERED_PORT,  /* data syscalls dropped by the port filter */
	ST_NOT_SOCKET,     /* I/O on fds that are not inet sockets */
	ST_TLS_EVENTS,     /* plaintext events from OpenSSL and Go's crypto/tls */
	ST_CIPHER_SUPPRESSED, /* ciphertext syscalls of TLS connections, not reported */
	ST_TLS_NO_SOCKET,  /* SSL calls whose socket could not be found (reported unbound) */
	ST_MMSG_CUT,       /* messages past MAX_MMSG in one sendmmsg/recvmmsg */
	ST_IOV_CUT,        /* iovecs past MAX_IOV */
	ST_PEEKED,         /* receives with MSG_PEEK: the bytes are read again, reported then */
	ST_URING_EVENTS,   /* data events from io_uring completions */
	ST_URING_NOT_COPIED, /* io_uring receives into buffers the kernel chose (provided
			      * buffers, multishot, zero-copy): length reported, bytes not copied */
	ST_EXEC_KNOWN,     /* execs of programs looked at already: not reported */
	ST_MAPPED_KNOWN,   /* mappings of TLS libraries looked at already: not reported */
	ST_NSPR_NO_SOCKET, /* NSPR socket calls whose socket was not seen (no socket syscall
			    * inside, none before): not reported */
	ST__COUNT,
};

struct l7tap_config {
	__u32 snaplen;      /* bytes copied per syscall, <= SNAP_MAX */
	__u32 port_filter;  /* 1: only ports in the ports map */
	__u32 pid_allow;    /* 1: only pids marked allow in the pids map */
	__u32 wakeup_bytes; /* wake the reader when this much is queued */
	__u32 self_pid;     /* never traced (l7tap itself) */
	__u32 pid_rules;    /* 1: the pids map has entries (else no lookup at all) */
	__u32 port_rules;   /* 1: the ports map has entries (else no lookup at all) */
	__u32 tls_probes;   /* 1: OpenSSL probes may be attached (else no SSL lookups) */
	__u32 unix_sockets; /* 1: Unix-domain stream sockets are captured too */
};

/* pids map values */
#define PID_ALLOW 1
#define PID_DENY 2

/* Every event carries its connection's addresses, ports, role and the process name (104
 * bytes), not only the open events. The issue that asked for this capture suggested a small
 * header with that metadata in separate open/close events; it is kept in each event because
 * an event can be lost (a full ring) and a connection can predate the capture: a lost
 * metadata event would leave every later event of its connection unattributable, while here
 * each event stands alone and a loss is only a gap of known size. It also gives an
 * unconnected UDP socket's peer per datagram and a shared socket's current process. Measured
 * (BENCHMARKS.md, fourth session), leaving out the process-name helper changed a captured
 * send's in-program time by less than this machine's noise, and the extra 56 bytes are copied
 * with the payload in one ring write. */
struct l7tap_event {
	__u64 ts_ns;     /* CLOCK_MONOTONIC */
	__u64 sock_id;   /* kernel socket address: the connection id */
	__u64 offset;    /* stream offset of the first byte, per direction */
	__u32 pid;
	__u32 tid;
	__u32 fd;
	__u32 total_len; /* bytes the syscall moved */
	__u32 cap_len;   /* bytes that follow the header */
	__u8 kind;
	__u8 dir;
	__u8 syscall;
	__u8 flags;
	__u16 family;    /* AF_INET / AF_INET6 */
	__u16 lport;     /* host byte order */
	__u16 rport;     /* host byte order */
	__u8 sotype;     /* SOCK_STREAM / SOCK_DGRAM */
	__u8 role;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[16];
};

/* sun_path's size, and the room for one name in an EV_UNIX_NAMES event */
#define UNIX_NAME_LEN 108
#define UNIX_NAME_SLOT 128

/* EV_UNIX_NAMES: the header (lport: the socket's own name length, rport: its peer's), then
 * both names, each in a slot of its own (sun_path bytes, zero-padded; an abstract name
 * starts with a NUL). */
struct l7tap_unix_names {
	struct l7tap_event hdr;
	__u8 names[2 * UNIX_NAME_SLOT];
};

#endif
