/* UDP server of tests/live_capture.rs that reads with recvmmsg(2) and answers with
 * sendmmsg(2), as high-rate DNS servers do (NSD, Knot): a batch of datagrams per call, each
 * with its own peer in msg_name on one unconnected socket. It answers every DNS query with
 * the query itself turned into a response: QR and RA set, RCODE 3 (NXDOMAIN), no records.
 * Prints one line per answered datagram: "id port" (the DNS id and the client's port).
 *     mmsg_dns PORT COUNT [BATCH]   (exits after COUNT answers)
 * Without BATCH, each recvmmsg takes up to 8 datagrams, whatever has arrived
 * (MSG_WAITFORONE); with it, each takes exactly BATCH (at most 256): one call for the whole
 * batch, and one sendmmsg of BATCH answers. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_BATCH 256

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4)
		return 2;
	int left = atoi(argv[2]);
	int batch = argc == 4 ? atoi(argv[3]) : 8;
	int flags = argc == 4 ? 0 : MSG_WAITFORONE;
	if (batch < 1 || batch > MAX_BATCH)
		return 2;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
	inet_pton(AF_INET, "127.0.0.1", &me.sin_addr);
	if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me))) {
		perror("bind");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	static char bufs[MAX_BATCH][512];
	static struct sockaddr_in peers[MAX_BATCH];
	static struct iovec iov[MAX_BATCH];
	static struct mmsghdr msgs[MAX_BATCH];
	while (left > 0) {
		memset(msgs, 0, sizeof(msgs));
		for (int i = 0; i < batch; i++) {
			iov[i].iov_base = bufs[i];
			iov[i].iov_len = sizeof(bufs[i]);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
			msgs[i].msg_hdr.msg_name = &peers[i];
			msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
		}
		int n = recvmmsg(fd, msgs, batch, flags, NULL);
		if (n < 0) {
			perror("recvmmsg");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			char *b = bufs[i];
			b[2] |= 0x80;             /* QR: a response */
			b[3] = (char)(0x80 | 3);  /* RA, RCODE 3 = NXDOMAIN */
			iov[i].iov_len = msgs[i].msg_len;
		}
		if (sendmmsg(fd, msgs, n, 0) != n) {
			perror("sendmmsg");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			unsigned char *b = (unsigned char *)bufs[i];
			printf("%u %u\n", (b[0] << 8) | b[1], ntohs(peers[i].sin_port));
		}
		left -= n;
	}
	return 0;
}
