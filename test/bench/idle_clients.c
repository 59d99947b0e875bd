/*
 * idle_clients.c - opens N logged-in client connections to one PostgreSQL
 * endpoint and holds them idle until SIGTERM or SIGINT, so that bench.sh can
 * read a pooler's memory per idle client. It owns nothing else: it sends no
 * query, keeps no statistics beyond how many logins succeeded, and is not part
 * of sluice or of its tests (bench.sh compiles it with cc against libpq).
 *
 * Usage: idle_clients CONNINFO N [MAX_IN_FLIGHT]
 *
 * Connections are made with libpq's non-blocking PQconnectStart/PQconnectPoll,
 * at most MAX_IN_FLIGHT (default 64) logging in at once so a pooler's listen
 * backlog is never what is being measured. When every login has finished it
 * prints one line, "ready ok=<n> failed=<n>", followed by the first failure's
 * message if there was one, flushes stdout, and waits for a signal; then it
 * closes every connection (PQfinish sends Terminate) and exits 0. It exits 1
 * on a usage error and 2 when logins do not finish within LOGIN_TIMEOUT_S.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define DEFAULT_IN_FLIGHT 64
#define LOGIN_TIMEOUT_S 300

/* One connection on its way in: what libpq last asked to wait for. */
struct pending {
	PGconn *conn;
	PostgresPollingStatusType want;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints a libpq error message on one line: bench.sh quotes it in a table. */
static void print_one_line(const char *msg)
{
	for (const char *p = msg; *p; p++)
		putchar(*p == '\n' || *p == '\t' ? ' ' : *p);
	putchar('\n');
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: %s CONNINFO N [MAX_IN_FLIGHT]\n", argv[0]);
		return 1;
	}
	const char *conninfo = argv[1];
	long total = strtol(argv[2], NULL, 10);
	long in_flight_max = argc == 4 ? strtol(argv[3], NULL, 10) : DEFAULT_IN_FLIGHT;
	if (total <= 0 || in_flight_max <= 0) {
		fprintf(stderr, "idle_clients: N and MAX_IN_FLIGHT must be positive\n");
		return 1;
	}

	/* Block the signals now: sigwait() below collects them, even one sent early. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_BLOCK, &stop, NULL);

	PGconn **done = calloc((size_t)total, sizeof(*done));
	struct pending *pend = calloc((size_t)in_flight_max, sizeof(*pend));
	struct pollfd *pfd = calloc((size_t)in_flight_max, sizeof(*pfd));
	if (!done || !pend || !pfd) {
		fprintf(stderr, "idle_clients: out of memory\n");
		return 1;
	}

	long started = 0, ok = 0, failed = 0, n_pend = 0;
	char *first_error = NULL;
	double deadline = now_s() + LOGIN_TIMEOUT_S;

	while (started < total || n_pend > 0) {
		/* Top up the logins in flight. */
		while (started < total && n_pend < in_flight_max) {
			PGconn *c = PQconnectStart(conninfo);
			started++;
			if (!c || PQstatus(c) == CONNECTION_BAD) {
				if (!first_error)
					first_error = strdup(c ? PQerrorMessage(c) : "out of memory");
				failed++;
				PQfinish(c);
				continue;
			}
			pend[n_pend].conn = c;
			pend[n_pend].want = PGRES_POLLING_WRITING;
			n_pend++;
		}
		if (n_pend == 0)
			break;
		if (now_s() > deadline) {
			fprintf(stderr, "idle_clients: logins did not finish in %d s (%ld ok, %ld "
					"failed, %ld in flight)\n",
				LOGIN_TIMEOUT_S, ok, failed, n_pend);
			return 2;
		}

		for (long i = 0; i < n_pend; i++) {
			pfd[i].fd = PQsocket(pend[i].conn);
			pfd[i].events = pend[i].want == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			pfd[i].revents = 0;
		}
		if (poll(pfd, (nfds_t)n_pend, 1000) < 0 && errno != EINTR) {
			perror("idle_clients: poll");
			return 2;
		}

		/* Advance every connection that is ready; compact the array as logins end. */
		long kept = 0;
		for (long i = 0; i < n_pend; i++) {
			struct pending p = pend[i];
			if (pfd[i].revents) {
				p.want = PQconnectPoll(p.conn);
				if (p.want == PGRES_POLLING_OK) {
					done[ok++] = p.conn;
					continue;
				}
				if (p.want == PGRES_POLLING_FAILED) {
					if (!first_error)
						first_error = strdup(PQerrorMessage(p.conn));
					failed++;
					PQfinish(p.conn);
					continue;
				}
			}
			pend[kept++] = p;
		}
		n_pend = kept;
	}

	printf("ready ok=%ld failed=%ld\n", ok, failed);
	if (first_error) {
		printf("first error: ");
		print_one_line(first_error);
	}
	fflush(stdout);

	int sig;
	sigwait(&stop, &sig);

	for (long i = 0; i < ok; i++)
		PQfinish(done[i]);
	free(first_error);
	free(done);
	free(pend);
	free(pfd);
	return 0;
}
