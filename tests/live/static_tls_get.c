/* HTTPS GETs over one keep-alive connection from a program with OpenSSL linked in statically
 * (the test builds it with -Wl,-Bstatic -lssl -lcrypto): it has SSL_write/SSL_read of its own,
 * which the probes on the system's libssl never see. Waits for a line on stdin before it
 * connects (a capture started meanwhile has looked at the program by then). Certificates are
 * not verified (the tests' server is self-signed). Prints "status body_length" per request.
 *     static_tls_get PORT PATH... */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[1 << 20];

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		return 2;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to))) {
		perror("connect");
		return 1;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		fprintf(stderr, "handshake failed\n");
		return 1;
	}
	for (int i = 2; i < argc; i++) {
		char req[512];
		int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", argv[i]);
		if (SSL_write(ssl, req, n) != n)
			return 1;
		/* The head, then the body by its Content-Length. */
		size_t have = 0;
		char *end = NULL;
		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			int got = SSL_read(ssl, buf + have, sizeof(buf) - have - 1);
			if (got <= 0)
				return 1;
			have += got;
		}
		size_t head = end + 4 - buf;
		buf[head - 1] = 0;
		int status = atoi(buf + 9);
		char *cl = strcasestr(buf, "\r\nContent-Length:");
		size_t len = cl ? strtoul(cl + 17, NULL, 10) : 0;
		while (have < head + len) {
			int got = SSL_read(ssl, buf + have, sizeof(buf) - have);
			if (got <= 0)
				return 1;
			have += got;
		}
		printf("%d %zu\n", status, len);
		fflush(stdout);
	}
	SSL_shutdown(ssl);
	close(fd);
	return 0;
}
