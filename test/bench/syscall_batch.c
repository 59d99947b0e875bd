/*
 * syscall_batch.c - what batching a loop round's socket reads and writes
 * through io_uring saves over one read(2) and writev(2) each, on this
 * machine's loopback TCP: the measurement behind sluice's io_uring setting
 * (test/bench/RESULTS.md).
 *
 * N connected loopback TCP pairs (TCP_NODELAY, non-blocking, as sluice's
 * sockets are). Each iteration writes a 100-byte message on one end of each
 * pair, then reads it on the other end: the plain way, one writev and one
 * read per pair; or the batched way, all N sends in one io_uring_enter, then
 * all N receives in one more, every operation with MSG_DONTWAIT, as
 * stream.c makes them. Prints the process's CPU time (user + system, from
 * getrusage) per message, that is per write and read of one message, for
 * N = 1, 2, 4, 8, 16 and 32.
 *
 * Not part of the build. Build and run (liburing-dev):
 *   cc -O2 -o /tmp/syscall_batch test/bench/syscall_batch.c -luring
 *   /tmp/syscall_batch [iterations]      (default 200000)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_PAIRS 32
#define MSG_LEN 100

static int writer[MAX_PAIRS], reader[MAX_PAIRS];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void make_pairs(void)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &len) != 0 || listen(l, MAX_PAIRS) != 0)
		die("listen");
	for (int i = 0; i < MAX_PAIRS; i++) {
		writer[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (writer[i] < 0 || connect(writer[i], (struct sockaddr *)&sa, sizeof(sa)) != 0)
			die("connect");
		reader[i] = accept(l, NULL, NULL);
		if (reader[i] < 0)
			die("accept");
		int one = 1;
		setsockopt(writer[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(reader[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		fcntl(writer[i], F_SETFL, O_NONBLOCK);
		fcntl(reader[i], F_SETFL, O_NONBLOCK);
	}
	close(l);
}

static double cpu_seconds(void)
{
	struct rusage r;
	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
	       (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

/* Submits the prepared operations and checks that each moved one whole message. */
static void run_ring(struct io_uring *ring, int n, const char *what)
{
	if (io_uring_submit_and_wait(ring, (unsigned)n) != n)
		die("io_uring_submit_and_wait");
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(ring, head, cqe)
	{
		if (cqe->res != MSG_LEN) {
			fprintf(stderr, "%s: %d\n", what, cqe->res);
			exit(1);
		}
		seen++;
	}
	io_uring_cq_advance(ring, seen);
	if (seen != (unsigned)n)
		die("completions");
}

/* CPU microseconds per message for n pairs, batched or not. */
static double measure(struct io_uring *ring, int n, bool batched, long iterations)
{
	char msg[MSG_LEN], buf[MAX_PAIRS][4096];
	memset(msg, 'x', sizeof(msg));
	double t0 = cpu_seconds();
	for (long it = 0; it < iterations; it++) {
		if (!batched) {
			for (int i = 0; i < n; i++) {
				struct iovec v = { msg, MSG_LEN };
				if (writev(writer[i], &v, 1) != MSG_LEN)
					die("writev");
			}
			for (int i = 0; i < n; i++)
				if (read(reader[i], buf[i], sizeof(buf[i])) != MSG_LEN)
					die("read");
			continue;
		}
		for (int i = 0; i < n; i++)
			io_uring_prep_send(io_uring_get_sqe(ring), writer[i], msg, MSG_LEN,
					   MSG_DONTWAIT | MSG_NOSIGNAL);
		run_ring(ring, n, "send");
		for (int i = 0; i < n; i++)
			io_uring_prep_recv(io_uring_get_sqe(ring), reader[i], buf[i], sizeof(buf[i]),
					   MSG_DONTWAIT);
		run_ring(ring, n, "recv");
	}
	return (cpu_seconds() - t0) / (double)iterations / n * 1e6;
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : 200000;
	make_pairs();
	struct io_uring ring;
	if (io_uring_queue_init(64, &ring, IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN) < 0)
		die("io_uring_queue_init");
	printf("pairs  plain us/msg  io_uring us/msg  io_uring/plain\n");
	for (int n = 1; n <= MAX_PAIRS; n *= 2) {
		double plain = measure(&ring, n, false, iterations / n);
		double batched = measure(&ring, n, true, iterations / n);
		printf("%5d  %12.3f  %15.3f  %14.2f\n", n, plain, batched, batched / plain);
	}
	io_uring_queue_exit(&ring);
	return 0;
}
