/*
 * check_peering.c - peer_id and [peers]: two sluice processes share one
 * port (so_reuseport), and a CancelRequest that reaches the process which
 * did not hand out its key is forwarded to the one that did, so the query
 * is cancelled all the same. Keys carry the issuer's peer_id and a TTL
 * (PgBouncer's layout); a key of an unknown peer, or one whose TTL is
 * spent, is dropped with PgBouncer's words.
 *
 * Which process the kernel picks for a TCP connection to the shared port is
 * chance, so the tests talk to each process on its own unix socket: the
 * query's client to A, the cancel to B.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define USERLIST "\"trustuser\" \"trustuserpw\"\n"
#define INI "auth_type = trust\nso_reuseport = 1\nadmin_users = trustuser\n"

struct pair {
	struct harness_sluice *a, *b; /* peer_id 1 and 2 */
	int port;
};

/* A and B on one port, each naming the other in [peers]. */
static void start_pair(struct pair *p, const char *b_peers_extra)
{
	p->port = harness_free_port();
	p->a = harness_sluice_start_on_port(INI "peer_id = 1\n", NULL, USERLIST, p->port);
	char *dbs = xasprintf("app = host=@PGHOST@ port=@PGPORT@ dbname=app\n"
			      "[peers]\n1 = host=%s port=%d %s\n",
		p->a->dir, p->port, b_peers_extra);
	p->b = harness_sluice_start_on_port(INI "peer_id = 2\n", dbs, USERLIST, p->port);
	free(dbs);
	/* A learns of B by a reload: B's directory did not exist when A started. */
	char *peers = xasprintf("[peers]\n2 = host=%s port=%d\n[users]\n", p->b->dir, p->port);
	harness_sluice_edit_ini(p->a, "[users]\n", peers);
	free(peers);
	harness_sluice_signal(p->a, SIGHUP);
	ck_assert(harness_sluice_log_wait(p->a, "configuration reloaded", 5000));
}

static void stop_pair(struct pair *p)
{
	harness_sluice_stop_ok(p->a);
	harness_sluice_stop_ok(p->b);
}

/* A blocking connection to s's own unix socket. */
static int unix_connect(const struct harness_sluice *s)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/.s.PGSQL.%d", s->dir, s->port);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s",
		sa.sun_path);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Logs trustuser in to app on s and returns the socket; the key goes to pid and key. */
static int login(const struct harness_sluice *s, uint32_t *pid, uint32_t *key)
{
	int fd = unix_connect(s);
	harness_raw_send_startup(fd, "trustuser", "app");
	bool have_key = false;
	for (;;) {
		struct harness_msg m;
		ck_assert_msg(harness_raw_read_msg(fd, &m), "login ended early");
		char type = m.type;
		if (type == 'K') {
			*pid = get_be32((const uint8_t *)m.body);
			*key = get_be32((const uint8_t *)m.body + 4);
			have_key = true;
		}
		ck_assert_msg(type != 'E', "login failed: %s", harness_msg_field(&m, 'M'));
		free(m.body);
		if (type == 'Z')
			break;
	}
	ck_assert(have_key);
	return fd;
}

/* Sends a CancelRequest to s and waits until s closes the connection (it is handled then). */
static void send_cancel(const struct harness_sluice *s, uint32_t pid, uint32_t key)
{
	int fd = unix_connect(s);
	uint8_t msg[16];
	put_be32(msg, 16);
	put_be32(msg + 4, 80877102);
	put_be32(msg + 8, pid);
	put_be32(msg + 12, key);
	harness_write_all(fd, msg, sizeof(msg));
	char c;
	ck_assert_int_eq(read(fd, &c, 1), 0);
	close(fd);
}

static void send_query(int fd, const char *sql)
{
	size_t n = strlen(sql) + 1;
	uint8_t hdr[5] = { 'Q' };
	put_be32(hdr + 1, (uint32_t)(4 + n));
	harness_write_all(fd, hdr, sizeof(hdr));
	harness_write_all(fd, sql, n);
}

/* The peer id in a key, as PgBouncer places it: the pid's second and third bytes. */
static int key_peer(uint32_t pid)
{
	return (int)(((pid >> 16) & 0xff) | ((pid >> 8) & 0xff) << 8);
}

/* A pid part of a key that nobody handed out, carrying peer id id. */
static uint32_t pid_of_peer(int id)
{
	return 0x12000034u | (uint32_t)(id & 0xff) << 16 | (uint32_t)(id >> 8) << 8;
}

START_TEST(test_cancel_reaching_the_other_process_is_forwarded)
{
	struct pair p;
	start_pair(&p, "");
	uint32_t pid, key;
	int fd = login(p.a, &pid, &key);
	ck_assert_int_eq(key_peer(pid), 1);
	ck_assert_uint_eq(key & 3, 3); /* three hops left */

	send_query(fd, "SELECT pg_sleep(10)");
	harness_wait_query_running("SELECT pg_sleep(10)");
	long t0 = harness_now_ms();
	send_cancel(p.b, pid, key);
	char *err = harness_raw_read_error(fd);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strncmp(err, "57014", 5) == 0, "%s", err);
	ck_assert_msg(harness_now_ms() - t0 < 3000, "the cancel took %ld ms", harness_now_ms() - t0);
	free(err);
	close(fd);
	ck_assert_int_eq(harness_sluice_log_count(p.b, "cancel request forwarded to peer 1"), 1);
	ck_assert_int_eq(harness_sluice_log_count(p.a, "forwarding cancel request to S-"), 1);
	stop_pair(&p);
}
END_TEST

/* A cancel that reaches its own process is handled there, even with itself in [peers]. */
START_TEST(test_cancel_reaching_its_own_process_is_not_forwarded)
{
	struct pair p;
	char *self = xasprintf("\n2 = host=/nonexistent port=1");
	start_pair(&p, self);
	free(self);
	uint32_t pid, key;
	int fd = login(p.b, &pid, &key);
	ck_assert_int_eq(key_peer(pid), 2);
	send_query(fd, "SELECT pg_sleep(10)");
	harness_wait_query_running("SELECT pg_sleep(10)");
	send_cancel(p.b, pid, key);
	char *err = harness_raw_read_error(fd);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strncmp(err, "57014", 5) == 0, "%s", err);
	free(err);
	close(fd);
	ck_assert_int_eq(harness_sluice_log_count(p.b, "forwarded to peer"), 0);
	stop_pair(&p);
}
END_TEST

/* Keys of no known peer, and keys whose TTL is spent, go nowhere (PgBouncer's words). */
START_TEST(test_unknown_peer_and_spent_ttl_are_dropped)
{
	struct pair p;
	start_pair(&p, "");
	send_cancel(p.b, pid_of_peer(3), 0x5678 | 3u);
	ck_assert_int_eq(
		harness_sluice_log_count(p.b, "could not find peer to forward request to"), 1);
	send_cancel(p.a, pid_of_peer(2), 0x5678 & ~3u);
	ck_assert_int_eq(harness_sluice_log_count(p.a, "failed to forward cancel request because "
						      "its TTL was exhausted"),
		1);
	/*
	 * A key of peer 1 that nobody knows goes to A once (TTL 3 -> 2), and A,
	 * whose id it carries, drops it instead of sending it back.
	 */
	send_cancel(p.b, pid_of_peer(1), 0x5678 | 3u);
	ck_assert(harness_sluice_log_wait(p.a, "cancel request handled", 3000));
	ck_assert_int_eq(harness_sluice_log_count(p.a, "forwarded to peer"), 0);
	stop_pair(&p);
}
END_TEST

START_TEST(test_show_peers_lists_the_peers)
{
	struct pair p;
	start_pair(&p, "pool_size=3");
	char *conn = xasprintf("host=%s dbname=pgbouncer user=trustuser", p.b->dir);
	PGconn *c = harness_connect(p.b, conn);
	free(conn);
	char *host = harness_show_value(c, "SHOW PEERS", "peer_id", "1", "host");
	ck_assert_str_eq(host, p.a->dir);
	free(host);
	ck_assert_int_eq(harness_show_long(c, "SHOW PEERS", "peer_id", "1", "port"), p.port);
	ck_assert_int_eq(harness_show_long(c, "SHOW PEERS", "peer_id", "1", "pool_size"), 3);
	ck_assert_int_eq(
		harness_show_long(c, "SHOW PEER_POOLS", "peer_id", "1", "cl_waiting_cancel_req"), 0);
	char *id = harness_show_value(c, "SHOW CONFIG", "key", "peer_id", "value");
	ck_assert_str_eq(id, "2");
	free(id);
	PQfinish(c);
	stop_pair(&p);
}
END_TEST

static Suite *peering_suite(void)
{
	Suite *su = suite_create("peering");
	TCase *tc = harness_tcase("peering");
	tcase_add_test(tc, test_cancel_reaching_the_other_process_is_forwarded);
	tcase_add_test(tc, test_cancel_reaching_its_own_process_is_not_forwarded);
	tcase_add_test(tc, test_unknown_peer_and_spent_ttl_are_dropped);
	tcase_add_test(tc, test_show_peers_lists_the_peers);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	return harness_run_suite(peering_suite());
}
