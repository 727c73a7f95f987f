/* A small HTTP/1.1 keep-alive server that does all its socket I/O through io_uring (liburing):
 * accept, receive, send and close are io_uring requests, never syscalls on the socket. Used
 * by tests/live_capture.rs to check that l7tap sees such traffic.
 *
 * Usage: uring_http PORT CONNECTIONS [sqpoll]
 * Serves CONNECTIONS connections one after the other, then exits; with "sqpoll", the ring is
 * set up with IORING_SETUP_SQPOLL (a kernel thread of the process submits). Connection c:
 *   c % 3 == 0: plain fds; the k-th request is received and answered with
 *     k % 5 == 0: RECV + SEND
 *     k % 5 == 1: READ + WRITEV (head and a 40,000-byte body, two iovecs)
 *     k % 5 == 2: RECVMSG + SENDMSG (two iovecs)
 *     k % 5 == 3: RECV into a provided buffer (IOSQE_BUFFER_SELECT: the kernel picks it) +
 *                 SEND_ZC
 *     k % 5 == 4: RECVMSG into a provided buffer + SEND
 *   c % 3 == 1: the same, on a fixed file (IOSQE_FIXED_FILE: requests name a slot, not an fd)
 *   c % 3 == 2: one multishot RECV over a ring of provided buffers for the whole connection
 *               (io_uring_register_buf_ring), answers by SEND
 * Prints "ready" once listening, then one line per answered request:
 * "<connection> <k> <method> <path> <body bytes>". */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BUF 8192
#define BGID 7     /* legacy provided buffers (IORING_OP_PROVIDE_BUFFERS) */
#define NBUFS 4
#define BGID_RING 8 /* a registered buffer ring */
#define RING_ENTRIES 8
#define MULTISHOT 1 /* user_data of the multishot receive; 0 for every other request */

static struct io_uring ring;
static char provided[NBUFS][BUF];
static char ringbufs[RING_ENTRIES][BUF];
static struct io_uring_buf_ring *br;
/* Completions of the multishot receive that arrived while waiting for another request. */
static struct {
	int res;
	unsigned flags;
} held[64];
static int nheld;

static void die(const char *what, int err)
{
	fprintf(stderr, "uring_http: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* Submits the prepared SQE and returns the result of its completion (a SEND_ZC's buffer
 * notification, flagged IORING_CQE_F_NOTIF, is reaped too). */
static int run(unsigned *cqe_flags)
{
	int submitted = io_uring_submit(&ring);
	if (submitted != 1)
		die("io_uring_submit", submitted < 0 ? submitted : EIO);
	int res = 0, more = 1;
	while (more) {
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&ring, &cqe);
		if (r < 0)
			die("io_uring_wait_cqe", r);
		if (cqe->user_data == MULTISHOT) {
			if (nheld == 64)
				die("too many held completions", ENOSPC);
			held[nheld].res = cqe->res;
			held[nheld++].flags = cqe->flags;
		} else if (cqe->flags & IORING_CQE_F_NOTIF) {
			more = 0;
		} else {
			res = cqe->res;
			if (cqe_flags)
				*cqe_flags = cqe->flags;
			more = (cqe->flags & IORING_CQE_F_MORE) != 0;
		}
		io_uring_cqe_seen(&ring, cqe);
	}
	return res;
}

/* A free SQE (the ring has room: one request is in flight at a time). The prep functions
 * reset the SQE's flags, so IOSQE_FIXED_FILE is set after them. */
static struct io_uring_sqe *sqe_get(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	if (!sqe)
		die("io_uring_get_sqe", EBUSY);
	return sqe;
}

static void provide(int bid)
{
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_provide_buffers(sqe, provided[bid], BUF, 1, BGID, bid);
	int r = run(NULL);
	if (r < 0)
		die("provide buffers", r);
}

/* Copies what a receive put in the provided buffer its completion names, and gives the
 * buffer back. */
static void take_provided(unsigned cqe_flags, char *at, int r)
{
	if (r <= 0)
		return;
	int bid = cqe_flags >> IORING_CQE_BUFFER_SHIFT;
	memcpy(at, provided[bid], (size_t)r);
	provide(bid);
}

/* Receives more of a request into buf[*len..], with the k-th request's operation. 0: the
 * peer closed. */
static int receive(int fd, int fixed, int k, char *buf, size_t *len)
{
	char *at = buf + *len;
	size_t room = BUF - 1 - *len;
	struct io_uring_sqe *sqe;
	unsigned flags = 0;
	int r;
	switch (k % 5) {
	case 0:
		sqe = sqe_get();
		io_uring_prep_recv(sqe, fd, at, room, 0);
		sqe->flags |= fixed ? IOSQE_FIXED_FILE : 0;
		r = run(NULL);
		break;
	case 1:
		sqe = sqe_get();
		io_uring_prep_read(sqe, fd, at, room, 0);
		sqe->flags |= fixed ? IOSQE_FIXED_FILE : 0;
		r = run(NULL);
		break;
	case 2: {
		struct iovec iov[2] = { { at, 10 < room ? 10 : room }, { at + 10, room > 10 ? room - 10 : 0 } };
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
		sqe = sqe_get();
		io_uring_prep_recvmsg(sqe, fd, &m, 0);
		sqe->flags |= fixed ? IOSQE_FIXED_FILE : 0;
		r = run(NULL);
		break;
	}
	case 3:
		sqe = sqe_get();
		io_uring_prep_recv(sqe, fd, NULL, room, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT | (fixed ? IOSQE_FIXED_FILE : 0);
		sqe->buf_group = BGID;
		r = run(&flags);
		take_provided(flags, at, r);
		break;
	default: {
		/* One iovec of the buffer's size: the kernel puts the provided buffer in it. */
		struct iovec iov = { NULL, room };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
		sqe = sqe_get();
		io_uring_prep_recvmsg(sqe, fd, &m, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT | (fixed ? IOSQE_FIXED_FILE : 0);
		sqe->buf_group = BGID;
		r = run(&flags);
		take_provided(flags, at, r);
		break;
	}
	}
	if (r < 0)
		die("receive", r);
	*len += (size_t)r;
	buf[*len] = 0;
	return r;
}

/* Arms one multishot receive over the buffer ring for the connection. */
static void arm_multishot(int fd)
{
	struct io_uring_sqe *sqe = sqe_get();
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID_RING;
	sqe->user_data = MULTISHOT;
	int submitted = io_uring_submit(&ring);
	if (submitted != 1)
		die("io_uring_submit", submitted < 0 ? submitted : EIO);
}

/* The next completion of the multishot receive, appended to buf[*len..]; 0: the peer closed
 * (or the receive ended: it is armed again). */
static int receive_multishot(int fd, char *buf, size_t *len)
{
	int res;
	unsigned flags;
	if (nheld) {
		res = held[0].res;
		flags = held[0].flags;
		memmove(held, held + 1, sizeof(held[0]) * (size_t)--nheld);
	} else {
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&ring, &cqe);
		if (r < 0)
			die("io_uring_wait_cqe", r);
		if (cqe->user_data != MULTISHOT)
			die("unexpected completion", EPROTO);
		res = cqe->res;
		flags = cqe->flags;
		io_uring_cqe_seen(&ring, cqe);
	}
	if (res < 0)
		die("multishot receive", res);
	if (res > 0) {
		int bid = flags >> IORING_CQE_BUFFER_SHIFT;
		size_t n = (size_t)res < BUF - 1 - *len ? (size_t)res : BUF - 1 - *len;
		memcpy(buf + *len, ringbufs[bid], n);
		*len += n;
		buf[*len] = 0;
		io_uring_buf_ring_add(br, ringbufs[bid], BUF, (unsigned short)bid,
				      io_uring_buf_ring_mask(RING_ENTRIES), 0);
		io_uring_buf_ring_advance(br, 1);
	}
	if (!(flags & IORING_CQE_F_MORE) && res > 0)
		arm_multishot(fd);
	return res;
}

/* Sends all of a and b, the first attempt with the k-th request's operation, any rest with
 * SEND. */
static void answer(int fd, int fixed, int k, const char *a, size_t alen, const char *b,
		   size_t blen)
{
	struct io_uring_sqe *sqe = sqe_get();
	struct iovec iov[2] = { { (void *)a, alen }, { (void *)b, blen } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
	static char joined[65536];
	size_t total = alen + blen;
	int r;
	switch (k % 5) {
	case 1:
		io_uring_prep_writev(sqe, fd, iov, 2, 0);
		break;
	case 2:
		io_uring_prep_sendmsg(sqe, fd, &m, 0);
		break;
	default:
		memcpy(joined, a, alen);
		memcpy(joined + alen, b, blen);
		if (k % 5 == 3)
			io_uring_prep_send_zc(sqe, fd, joined, total, 0, 0);
		else
			io_uring_prep_send(sqe, fd, joined, total, 0);
		break;
	}
	sqe->flags |= fixed ? IOSQE_FIXED_FILE : 0;
	r = run(NULL);
	if (r < 0)
		die("send", r);
	size_t done = (size_t)r;
	while (done < total) {
		static char rest[65536];
		size_t n = 0;
		for (size_t i = done; i < total; i++)
			rest[n++] = i < alen ? a[i] : b[i - alen];
		sqe = sqe_get();
		io_uring_prep_send(sqe, fd, rest, n, 0);
		sqe->flags |= fixed ? IOSQE_FIXED_FILE : 0;
		r = run(NULL);
		if (r <= 0)
			die("send rest", r < 0 ? r : EPIPE);
		done += (size_t)r;
	}
}

int main(int argc, char **argv)
{
	if (argc != 3 && !(argc == 4 && !strcmp(argv[3], "sqpoll"))) {
		fprintf(stderr, "usage: uring_http PORT CONNECTIONS [sqpoll]\n");
		return 2;
	}
	int port = atoi(argv[1]), conns = atoi(argv[2]);
	struct io_uring_params params = { .flags = argc == 4 ? IORING_SETUP_SQPOLL : 0 };
	int r = io_uring_queue_init_params(8, &ring, &params);
	if (r < 0)
		die("io_uring_queue_init", r);
	int files[1] = { -1 };
	r = io_uring_register_files(&ring, files, 1);
	if (r < 0)
		die("io_uring_register_files", r);
	for (int bid = 0; bid < NBUFS; bid++)
		provide(bid);
	br = mmap(NULL, RING_ENTRIES * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
		  MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED)
		die("mmap", errno);
	struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)br,
					.ring_entries = RING_ENTRIES,
					.bgid = BGID_RING };
	r = io_uring_register_buf_ring(&ring, &reg, 0);
	if (r < 0)
		die("io_uring_register_buf_ring", r);
	io_uring_buf_ring_init(br);
	for (int bid = 0; bid < RING_ENTRIES; bid++)
		io_uring_buf_ring_add(br, ringbufs[bid], BUF, (unsigned short)bid,
				      io_uring_buf_ring_mask(RING_ENTRIES), bid);
	io_uring_buf_ring_advance(br, RING_ENTRIES);

	int ls = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 16))
		die("bind/listen", errno);
	printf("ready\n");
	fflush(stdout);

	static char body[40000];
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = 'a' + (char)(i % 26);
	for (int c = 0; c < conns; c++) {
		struct io_uring_sqe *sqe = sqe_get();
		io_uring_prep_accept(sqe, ls, NULL, NULL, 0);
		int fd = run(NULL);
		if (fd < 0)
			die("accept", fd);
		int fixed = c % 3 == 1, multishot = c % 3 == 2;
		int target = fd;
		if (fixed) {
			r = io_uring_register_files_update(&ring, 0, &fd, 1);
			if (r != 1)
				die("io_uring_register_files_update", r < 0 ? r : EIO);
			target = 0; /* the slot */
		}
		char buf[BUF];
		if (multishot)
			arm_multishot(fd);
		for (int k = 0;; k++) {
			size_t len = 0;
			char *end = NULL;
			while (!end) {
				if (len >= BUF - 1)
					break;
				int got = multishot ? receive_multishot(fd, buf, &len)
						    : receive(target, fixed, k, buf, &len);
				if (got == 0)
					break;
				end = strstr(buf, "\r\n\r\n");
			}
			if (!end)
				break; /* closed by the client */
			char method[16] = "", path[256] = "";
			sscanf(buf, "%15s %255s", method, path);
			/* The multishot connection answers by SEND (k % 5 == 0) only. */
			int op = multishot ? 0 : k % 5;
			size_t blen = op == 1 ? sizeof(body) : 20 + strlen(path);
			char small[300];
			const char *b = body;
			if (op != 1) {
				snprintf(small, sizeof(small), "io_uring answered %s\n", path);
				blen = strlen(small);
				b = small;
			}
			char head[200];
			int hlen = snprintf(head, sizeof(head),
					    "HTTP/1.1 200 OK\r\nServer: uring_http\r\n"
					    "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
					    blen);
			answer(target, fixed, op, head, (size_t)hlen, b, blen);
			printf("%d %d %s %s %zu\n", c, k, method, path, blen);
			fflush(stdout);
		}
		if (fixed) {
			int gone = -1;
			io_uring_register_files_update(&ring, 0, &gone, 1);
		}
		sqe = sqe_get();
		io_uring_prep_close(sqe, fd);
		r = run(NULL);
		if (r < 0)
			die("close", r);
	}
	io_uring_queue_exit(&ring);
	return 0;
}
