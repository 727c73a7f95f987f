/* io_uring requests in batches of 32 per io_uring_enter, timed by the wall clock; prints the
 * ns per request and the number of requests that failed. For scripts/bench-uring.sh: what
 * l7tap's io_uring programs add to a request.
 *
 * Usage:
  *   uring_bench send N PORT        N 100-byte SENDs on a connected UDP socket to a socket of
 *                                 its own on 127.0.0.1:PORT that never reads (the kernel drops
 *                                 what overflows it, after the send succeeded): captured
  *   uring_bench read N FILE        N 4 KiB READs of FILE at offset 0 (the page cache): file
 *                                 I/O, which l7tap must pass over cheaply
  *   uring_bench readfixed N FILE   the same through a registered (fixed) file, which l7tap can
 *                                 only tell from a socket when the request completes */
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: uring_bench send N PORT | read N FILE | readfixed N FILE\n");
		return 2;
	}
	const char *mode = argv[1];
	long n = atol(argv[2]);
	int fd, fixed = 0, want;
	static char buf[4096];
	if (!strcmp(mode, "send")) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int sink = socket(AF_INET, SOCK_DGRAM, 0);
		fd = socket(AF_INET, SOCK_DGRAM, 0);
		if (sink < 0 || fd < 0 || bind(sink, (struct sockaddr *)&sa, sizeof(sa)) ||
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			perror("socket/bind/connect");
			return 1;
		}
		memset(buf, 'x', 100);
		want = 100;
	} else {
		fd = open(argv[3], O_RDONLY);
		if (fd < 0) {
			perror(argv[3]);
			return 1;
		}
		fixed = !strcmp(mode, "readfixed");
		want = sizeof(buf);
	}
	struct io_uring ring;
	int r = io_uring_queue_init(BATCH, &ring, 0);
	if (r < 0) {
		fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-r));
		return 1;
	}
	if (fixed) {
		r = io_uring_register_files(&ring, &fd, 1);
		if (r < 0) {
			fprintf(stderr, "io_uring_register_files: %s\n", strerror(-r));
			return 1;
		}
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long done = 0, failed = 0;
	while (done < n) {
		int batch = n - done < BATCH ? (int)(n - done) : BATCH;
		for (int i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (!strcmp(mode, "send")) {
				io_uring_prep_send(sqe, fd, buf, (size_t)want, 0);
			} else {
				io_uring_prep_read(sqe, fixed ? 0 : fd, buf, (unsigned)want, 0);
				if (fixed)
					sqe->flags |= IOSQE_FIXED_FILE;
			}
		}
		r = io_uring_submit_and_wait(&ring, (unsigned)batch);
		if (r < 0) {
			fprintf(stderr, "io_uring_submit_and_wait: %s\n", strerror(-r));
			return 1;
		}
		for (int i = 0; i < batch; i++) {
			struct io_uring_cqe *cqe;
			if (io_uring_wait_cqe(&ring, &cqe) < 0)
				return 1;
			failed += cqe->res != want;
			io_uring_cqe_seen(&ring, cqe);
		}
		done += batch;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
	printf("%.1f %ld\n", ns / (double)n, failed);
	return 0;
}
