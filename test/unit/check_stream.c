/*
 * check_stream.c - unit tests of the stream layer: a peer address kept as
 * struct stream_addr prints exactly as stream_format_address prints the
 * sockaddr it came from; and the I/O stream.c does itself on a poll handle
 * (reads, the write queue, EOF, connects, closes), on socket pairs and unix
 * sockets driven by a loop of the test's own.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/stream.h"

/* Both ways of printing sa, which must agree; returns the kept address's text. */
static const char *both_ways(const struct sockaddr *sa, char *kept, size_t len)
{
	char direct[64];
	stream_format_address(sa, direct, sizeof(direct));
	struct stream_addr a;
	stream_addr_set(&a, sa);
	ck_assert_ptr_eq(stream_addr_format(&a, kept, len), kept);
	ck_assert_str_eq(kept, direct);
	return kept;
}

START_TEST(test_stream_addr_prints_ipv4_as_the_sockaddr_does)
{
	static const struct {
		const char *ip;
		int port;
		const char *text;
	} cases[] = {
		{ "127.0.0.1", 5432, "127.0.0.1:5432" },
		{ "0.0.0.0", 0, "0.0.0.0:0" },
		{ "255.255.255.255", 65535, "255.255.255.255:65535" },
		{ "10.1.20.255", 1, "10.1.20.255:1" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_in in;
		memset(&in, 0, sizeof(in));
		in.sin_family = AF_INET;
		in.sin_port = htons((uint16_t)cases[i].port);
		ck_assert_int_eq(inet_pton(AF_INET, cases[i].ip, &in.sin_addr), 1);
		char text[STREAM_ADDR_TEXT_MAX];
		ck_assert_str_eq(both_ways((struct sockaddr *)&in, text, sizeof(text)),
				 cases[i].text);
	}
}
END_TEST

START_TEST(test_stream_addr_prints_ipv6_as_the_sockaddr_does_longest_included)
{
	static const struct {
		const char *ip;
		int port;
		const char *text;
	} cases[] = {
		{ "::1", 5432, "::1:5432" },
		{ "::ffff:192.168.100.200", 65535, "::ffff:192.168.100.200:65535" },
		{ "fe80::1", 6432, "fe80::1:6432" },
		/* The longest an accepted peer's address prints (39 characters). */
		{ "1234:5678:9abc:def0:1234:5678:9abc:def0", 12345,
		  "1234:5678:9abc:def0:1234:5678:9abc:def0:12345" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_in6 in6;
		memset(&in6, 0, sizeof(in6));
		in6.sin6_family = AF_INET6;
		in6.sin6_port = htons((uint16_t)cases[i].port);
		in6.sin6_scope_id = 3; /* printed by neither */
		ck_assert_int_eq(inet_pton(AF_INET6, cases[i].ip, &in6.sin6_addr), 1);
		char text[STREAM_ADDR_TEXT_MAX];
		ck_assert_str_eq(both_ways((struct sockaddr *)&in6, text, sizeof(text)),
				 cases[i].text);
	}
}
END_TEST

START_TEST(test_stream_addr_prints_unix_and_unknown_families_as_the_sockaddr_does)
{
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	char text[STREAM_ADDR_TEXT_MAX];
	ck_assert_str_eq(both_ways((struct sockaddr *)&un, text, sizeof(text)), "unix");
	struct sockaddr_storage other;
	memset(&other, 0, sizeof(other));
	other.ss_family = AF_APPLETALK;
	ck_assert_str_eq(both_ways((struct sockaddr *)&other, text, sizeof(text)), "?");
	struct stream_addr a;
	stream_addr_set(&a, NULL);
	ck_assert_str_eq(stream_addr_format(&a, text, sizeof(text)), "?");
}
END_TEST

START_TEST(test_stream_addr_truncates_to_the_buffer_given)
{
	struct sockaddr_in in;
	memset(&in, 0, sizeof(in));
	in.sin_family = AF_INET;
	in.sin_port = htons(5432);
	ck_assert_int_eq(inet_pton(AF_INET, "192.168.1.1", &in.sin_addr), 1);
	struct stream_addr a;
	stream_addr_set(&a, (struct sockaddr *)&in);
	char small[8];
	ck_assert_str_eq(stream_addr_format(&a, small, sizeof(small)), "192.168");
}
END_TEST

/* ---- I/O ------------------------------------------------------------------------ */

/* A stream's owner that records what it hears. */
struct probe {
	struct stream s;
	uint8_t *got;
	size_t got_len, got_cap;
	int errors, last_error, drains, closes, connects, connect_status;
	/* probe_meddle: what its first read does to another probe (pause or close it) */
	struct probe *other;
	enum { MEDDLE_NONE, MEDDLE_PAUSE, MEDDLE_CLOSE } meddle;
};

static void probe_read(struct stream *s)
{
	struct probe *p = container_of(s, struct probe, s);
	size_t n = stream_avail(s);
	if (p->got_len + n > p->got_cap) {
		p->got_cap = (p->got_len + n) * 2;
		p->got = realloc(p->got, p->got_cap);
	}
	memcpy(p->got + p->got_len, stream_data(s), n);
	p->got_len += n;
	stream_consume(s, n);
}

static void probe_error(struct stream *s, int err)
{
	struct probe *p = container_of(s, struct probe, s);
	p->errors++;
	p->last_error = err;
}

static void probe_drain(struct stream *s)
{
	container_of(s, struct probe, s)->drains++;
}

static void probe_close(struct stream *s)
{
	container_of(s, struct probe, s)->closes++;
}

static void probe_connect(struct stream *s, int status)
{
	struct probe *p = container_of(s, struct probe, s);
	p->connects++;
	p->connect_status = status;
}

static const struct stream_ops probe_ops = {
	.read = probe_read,
	.error = probe_error,
	.drain = probe_drain,
	.close = probe_close,
	.connect = probe_connect,
};

/*
 * Reads as probe_read; the first of a pair of probes to read pauses or
 * closes the other (p->meddle), as an owner may do to another stream whose
 * input came in the same round.
 */
static void probe_meddle_read(struct stream *s)
{
	struct probe *p = container_of(s, struct probe, s);
	probe_read(s);
	struct probe *o = p->other;
	if (!o || o->got_len > 0 || p->meddle == MEDDLE_NONE)
		return;
	int what = p->meddle;
	p->meddle = o->meddle = MEDDLE_NONE;
	if (what == MEDDLE_PAUSE)
		stream_pause(&o->s);
	else
		stream_close(&o->s);
}

static const struct stream_ops meddle_ops = {
	.read = probe_meddle_read,
	.error = probe_error,
	.drain = probe_drain,
	.close = probe_close,
	.connect = probe_connect,
};

static uv_loop_t loop;
static struct stream_ctx ctx;

static void io_setup(void)
{
	/* As main does: a write to a gone peer is an EPIPE, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	stream_ctx_init(&ctx, &loop, 8);
}

static void io_teardown(void)
{
	stream_ctx_close(&ctx);
	uv_run(&loop, UV_RUN_DEFAULT);
	stream_ctx_deinit(&ctx);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/*
 * The same tests with io_uring (tcase "io_uring"): the round's reads and
 * writes go in batches (stream_ctx_use_uring).
 */
static void io_uring_setup(void)
{
	io_setup();
	ck_assert_int_eq(stream_ctx_use_uring(&ctx), 0);
}

/*
 * One loop iteration that does not block, then the check step's batched
 * reads and flush, as the worker runs them.
 */
static void turn(void)
{
	uv_run(&loop, UV_RUN_NOWAIT);
	stream_ctx_read_batch(&ctx);
	stream_ctx_flush(&ctx);
}

/* Closes p's stream and turns the loop until its close callback has run. */
static void close_probe(struct probe *p)
{
	stream_close(&p->s);
	for (int i = 0; i < 100 && !p->closes; i++)
		turn();
	ck_assert_int_eq(p->closes, 1);
	free(p->got);
}

/* A probe on one end of a non-blocking unix socket pair; the other end is *peer. */
static void probe_on_pair(struct probe *p, int *peer)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	memset(p, 0, sizeof(*p));
	ck_assert_int_eq(stream_init(&ctx, &p->s, true, &probe_ops), 0);
	ck_assert_int_eq(stream_adopt(&p->s, sv[0]), 0);
	*peer = sv[1];
}

/* Probes a and b, each on a socket pair (peers pa, pb), the first to read meddling with the other. */
static void meddling_pair(struct probe *a, int *pa, struct probe *b, int *pb, int meddle)
{
	probe_on_pair(a, pa);
	probe_on_pair(b, pb);
	a->s.ops = b->s.ops = &meddle_ops;
	a->other = b;
	b->other = a;
	a->meddle = b->meddle = meddle;
	stream_read_start(&a->s);
	stream_read_start(&b->s);
	/* Both readable in one round: one poll reports them together. */
	ck_assert_int_eq(write(*pa, "one", 3), 3);
	ck_assert_int_eq(write(*pb, "two", 3), 3);
	for (int i = 0; i < 10 && a->got_len + b->got_len == 0; i++)
		turn();
	ck_assert_uint_eq(a->got_len + b->got_len, 3);
}

START_TEST(test_stream_input_of_a_stream_paused_in_its_round_reaches_it_when_resumed)
{
	struct probe a, b;
	int pa, pb;
	meddling_pair(&a, &pa, &b, &pb, MEDDLE_PAUSE);
	struct probe *later = a.got_len ? &b : &a;
	const char *want = later == &a ? "one" : "two";
	for (int i = 0; i < 5; i++)
		turn();
	ck_assert_uint_eq(later->got_len, 0); /* paused: nothing delivered */
	/* Its peer sends nothing more: what it sent must come anyway. */
	stream_resume(&later->s);
	for (int i = 0; i < 10 && later->got_len < 3; i++)
		turn();
	ck_assert_uint_eq(later->got_len, 3);
	ck_assert_int_eq(memcmp(later->got, want, 3), 0);
	ck_assert_int_eq(a.errors + b.errors, 0);
	close(pa);
	close(pb);
	close_probe(&a);
	close_probe(&b);
}
END_TEST

START_TEST(test_stream_closed_by_an_earlier_reader_of_its_round_hears_nothing_more)
{
	struct probe a, b;
	int pa, pb;
	meddling_pair(&a, &pa, &b, &pb, MEDDLE_CLOSE);
	struct probe *later = a.got_len ? &b : &a;
	for (int i = 0; i < 10 && !later->closes; i++)
		turn();
	ck_assert_int_eq(later->closes, 1);
	ck_assert_uint_eq(later->got_len, 0);
	ck_assert_int_eq(later->errors, 0);
	free(later->got);
	close(pa);
	close(pb);
	close_probe(later == &a ? &b : &a);
}
END_TEST

START_TEST(test_stream_writes_of_one_round_reach_their_peers_and_a_gone_peer_fails_alone)
{
	enum { N = 4 };
	struct probe p[N];
	int peer[N];
	for (int i = 0; i < N; i++)
		probe_on_pair(&p[i], &peer[i]);
	close(peer[1]);
	for (int i = 0; i < N; i++) {
		char msg[8];
		int len = snprintf(msg, sizeof(msg), "msg%d", i);
		stream_write(&p[i].s, msg, (size_t)len);
	}
	stream_ctx_flush(&ctx);
	for (int i = 0; i < N; i++) {
		if (i == 1) {
			ck_assert_int_eq(p[i].errors, 1);
			ck_assert_int_eq(p[i].last_error, UV_EPIPE);
			continue;
		}
		char buf[8], want[8];
		snprintf(want, sizeof(want), "msg%d", i);
		ck_assert_int_eq(read(peer[i], buf, sizeof(buf)), 4);
		ck_assert_int_eq(memcmp(buf, want, 4), 0);
		ck_assert_int_eq(p[i].errors, 0);
		ck_assert_int_eq(p[i].drains, 1);
		close(peer[i]);
	}
	for (int i = 0; i < N; i++)
		close_probe(&p[i]);
}
END_TEST

START_TEST(test_stream_reads_what_the_peer_sends_and_hears_eof_once)
{
	struct probe p;
	int peer;
	probe_on_pair(&p, &peer);
	stream_read_start(&p.s);
	ck_assert_int_eq(write(peer, "hello", 5), 5);
	for (int i = 0; i < 10 && p.got_len < 5; i++)
		turn();
	ck_assert_uint_eq(p.got_len, 5);
	ck_assert_int_eq(memcmp(p.got, "hello", 5), 0);
	close(peer);
	/* Later turns must not hear it again: the poll stops watching a socket at EOF. */
	for (int i = 0; i < 10; i++)
		turn();
	ck_assert_int_eq(p.errors, 1);
	ck_assert_int_eq(p.last_error, UV_EOF);
	ck_assert(p.s.eof);
	close_probe(&p);
}
END_TEST

START_TEST(test_stream_read_stopped_reads_nothing_until_resumed)
{
	struct probe p;
	int peer;
	probe_on_pair(&p, &peer);
	stream_read_start(&p.s);
	stream_pause(&p.s);
	ck_assert_int_eq(write(peer, "abc", 3), 3);
	for (int i = 0; i < 5; i++)
		turn();
	ck_assert_uint_eq(p.got_len, 0);
	stream_resume(&p.s);
	for (int i = 0; i < 10 && p.got_len < 3; i++)
		turn();
	ck_assert_uint_eq(p.got_len, 3);
	close(peer);
	close_probe(&p);
}
END_TEST

START_TEST(test_stream_write_the_socket_cannot_take_at_once_arrives_whole_and_in_order)
{
	struct probe p;
	int peer;
	probe_on_pair(&p, &peer);
	int small = 4096;
	(void)setsockopt(p.s.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	enum { CHUNK = 1000, CHUNKS = 1000 };
	uint8_t chunk[CHUNK];
	for (int i = 0; i < CHUNKS; i++) {
		for (int j = 0; j < CHUNK; j++)
			chunk[j] = (uint8_t)(i * 7 + j);
		stream_write(&p.s, chunk, CHUNK);
	}
	stream_ctx_flush(&ctx);
	ck_assert_uint_gt(p.s.queued, 0); /* the socket could not take a megabyte */
	ck_assert_int_eq(p.drains, 0);
	uint8_t *all = malloc((size_t)CHUNK * CHUNKS);
	size_t have = 0;
	for (int round = 0; round < 100000 && have < (size_t)CHUNK * CHUNKS; round++) {
		ssize_t n = read(peer, all + have, (size_t)CHUNK * CHUNKS - have);
		if (n > 0)
			have += (size_t)n;
		turn();
	}
	ck_assert_uint_eq(have, (size_t)CHUNK * CHUNKS);
	for (int i = 0; i < CHUNKS; i++)
		for (int j = 0; j < CHUNK; j++)
			ck_assert_uint_eq(all[(size_t)i * CHUNK + j], (uint8_t)(i * 7 + j));
	free(all);
	for (int i = 0; i < 10 && p.drains == 0; i++)
		turn();
	ck_assert_uint_eq(p.s.queued, 0);
	ck_assert_int_eq(p.drains, 1);
	ck_assert_int_eq(p.errors, 0);
	close(peer);
	close_probe(&p);
}
END_TEST

START_TEST(test_stream_write_to_a_gone_peer_reports_the_error_from_the_loop)
{
	struct probe p;
	int peer;
	probe_on_pair(&p, &peer);
	close(peer);
	stream_write(&p.s, "x", 1);
	stream_ctx_flush(&ctx);
	ck_assert_int_eq(p.errors, 1);
	ck_assert_int_eq(p.last_error, UV_EPIPE);
	close_probe(&p);
}
END_TEST

START_TEST(test_stream_without_a_socket_closes_from_the_loop)
{
	struct probe p;
	memset(&p, 0, sizeof(p));
	ck_assert_int_eq(stream_init(&ctx, &p.s, false, &probe_ops), 0);
	stream_close(&p.s);
	ck_assert_int_eq(p.closes, 0); /* never from inside stream_close */
	close_probe(&p);
}
END_TEST

START_TEST(test_stream_dial_to_a_missing_unix_socket_fails_from_the_loop)
{
	struct probe p;
	memset(&p, 0, sizeof(p));
	ck_assert_int_eq(stream_dial(&ctx, &p.s, &probe_ops, "/nonexistent-sluice-dir", 5432, 0), 0);
	ck_assert_int_eq(p.connects, 0); /* never from inside stream_dial */
	for (int i = 0; i < 10 && !p.connects; i++)
		turn();
	ck_assert_int_eq(p.connects, 1);
	ck_assert_int_eq(p.connect_status, UV_ENOENT);
	close_probe(&p);
}
END_TEST

START_TEST(test_stream_dial_to_a_unix_socket_connects_and_writes_what_was_queued_before)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(path, sizeof(path), "/tmp/check_stream.%d", (int)getpid());
	unlink(path);
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
	ck_assert_int_eq(bind(ls, (struct sockaddr *)&un, sizeof(un)), 0);
	ck_assert_int_eq(listen(ls, 4), 0);

	struct probe p;
	memset(&p, 0, sizeof(p));
	ck_assert_int_eq(stream_dial(&ctx, &p.s, &probe_ops, path, 0, 1000), 0);
	/* Written while connecting: it waits for the connect. */
	stream_write(&p.s, "early", 5);
	stream_ctx_flush(&ctx);
	ck_assert_int_eq(p.connects, 0);
	for (int i = 0; i < 10 && !p.connects; i++)
		turn();
	ck_assert_int_eq(p.connects, 1);
	ck_assert_int_eq(p.connect_status, 0);
	for (int i = 0; i < 10 && p.s.queued; i++)
		turn();
	int peer = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(peer, 0);
	char buf[8];
	ck_assert_int_eq(read(peer, buf, sizeof(buf)), 5);
	ck_assert_int_eq(memcmp(buf, "early", 5), 0);
	close(peer);
	close(ls);
	unlink(path);
	close_probe(&p);
}
END_TEST

START_TEST(test_stream_linger_sends_what_is_queued_then_half_closes)
{
	struct probe p;
	int peer;
	probe_on_pair(&p, &peer);
	stream_read_start(&p.s);
	stream_write(&p.s, "bye", 3);
	stream_close_linger(&p.s);
	char buf[8];
	ck_assert_int_eq(read(peer, buf, sizeof(buf)), 3);
	ck_assert_int_eq(read(peer, buf, sizeof(buf)), 0); /* the write side is shut down */
	/* Input is discarded, and the close completes when the peer closes. */
	ck_assert_int_eq(write(peer, "more", 4), 4);
	turn();
	ck_assert_int_eq(p.closes, 0);
	close(peer);
	for (int i = 0; i < 10 && !p.closes; i++)
		turn();
	ck_assert_uint_eq(p.got_len, 0);
	ck_assert_int_eq(p.errors, 0);
	ck_assert_int_eq(p.closes, 1);
	free(p.got);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stream");
	TCase *tc = tcase_create("stream");
	tcase_add_test(tc, test_stream_addr_prints_ipv4_as_the_sockaddr_does);
	tcase_add_test(tc, test_stream_addr_prints_ipv6_as_the_sockaddr_does_longest_included);
	tcase_add_test(tc, test_stream_addr_prints_unix_and_unknown_families_as_the_sockaddr_does);
	tcase_add_test(tc, test_stream_addr_truncates_to_the_buffer_given);
	suite_add_tcase(s, tc);
	/* The I/O tests run twice: plain system calls, then io_uring where the build has it. */
	for (int uring = 0; uring <= (stream_uring_built() ? 1 : 0); uring++) {
		TCase *io = tcase_create(uring ? "io_uring" : "io");
		tcase_add_checked_fixture(io, uring ? io_uring_setup : io_setup, io_teardown);
		tcase_add_test(io, test_stream_reads_what_the_peer_sends_and_hears_eof_once);
		tcase_add_test(io, test_stream_read_stopped_reads_nothing_until_resumed);
		tcase_add_test(io, test_stream_write_the_socket_cannot_take_at_once_arrives_whole_and_in_order);
		tcase_add_test(io, test_stream_write_to_a_gone_peer_reports_the_error_from_the_loop);
		tcase_add_test(io, test_stream_without_a_socket_closes_from_the_loop);
		tcase_add_test(io, test_stream_dial_to_a_missing_unix_socket_fails_from_the_loop);
		tcase_add_test(io, test_stream_dial_to_a_unix_socket_connects_and_writes_what_was_queued_before);
		tcase_add_test(io, test_stream_linger_sends_what_is_queued_then_half_closes);
		tcase_add_test(io, test_stream_input_of_a_stream_paused_in_its_round_reaches_it_when_resumed);
		tcase_add_test(io, test_stream_closed_by_an_earlier_reader_of_its_round_hears_nothing_more);
		tcase_add_test(io, test_stream_writes_of_one_round_reach_their_peers_and_a_gone_peer_fails_alone);
		suite_add_tcase(s, io);
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
