/*
 * check_handover.c - a handed-over client's record (handover.c): what is
 * written is read back field by field, and what a new process must not
 * believe is refused: another version, unknown flags, counts past their
 * bounds or past the bytes there are, trailing bytes, a cut record.
 */
#include <check.h>
#include <string.h>

#include "sluice/handover.h"

/* The pinned layout of sample(true) for HANDOVER_VERSION 2 (see the test at the end). */
#define PINNED_LEN 330
#define PINNED_HASH 0x1dac671u

static const uint8_t parse_text[] = "SELECT $1\0\0\1\0\0\0\x17";
static const uint8_t input[] = { 'S', 0, 0, 0, 4 };

static void sample(struct buf_out *out, bool full)
{
	struct handover_param params[] = { { "application_name", "app" },
					   { "TimeZone", "Europe/Paris" } };
	struct handover_prepared prepared[] = { { "s1", parse_text, sizeof(parse_text) - 1 },
						{ "s2", parse_text, 0 } };
	struct handover_client h = {
		.id = 42,
		.connect_time_ms = 1765000000123ull,
		.is_unix = !full,
		.admin_role = full ? 0 : 2,
		.addr_family = full ? 10 : 1,
		.addr_port = 61000,
		.addr_ip = { 0xfe, 0x80, [15] = 1 },
		.peer_pid = full ? 0 : 4242,
		.cancel_pid = 0x7fff0001,
		.cancel_key = 0xdeadbeef,
		.db = full ? "app" : "pgbouncer",
		.user = full ? "alice" : "pgbouncer",
		.have_scram_keys = full,
		.password = full ? "pw" : NULL,
		.params = full ? params : NULL,
		.n_params = full ? 2 : 0,
		.prepared = full ? prepared : NULL,
		.n_prepared = full ? 2 : 0,
		.input = full ? input : NULL,
		.input_len = full ? sizeof(input) : 0,
		.linked = full,
		.server = { .id = 43,
			    .connect_time_ms = 1765000000000ull,
			    .be_pid = 4711,
			    .be_key = 0xfeedface,
			    .host_index = 1,
			    .port = 5433,
			    .addr = "/run/postgresql/.s.PGSQL.5433",
			    .host = "",
			    .params = params,
			    .n_params = full ? 2 : 0 },
	};
	memset(h.scram_client_key, 0x5a, 32);
	memset(h.scram_server_key, 0xa5, 32);
	handover_client_encode(out, &h);
}

START_TEST(test_a_record_reads_back_as_written)
{
	struct buf_out out;
	buf_out_init(&out);
	sample(&out, true);
	struct handover_client h;
	ck_assert_int_eq(handover_client_decode(out.data, out.len, &h), 0);
	ck_assert_uint_eq(h.id, 42);
	ck_assert_uint_eq(h.connect_time_ms, 1765000000123ull);
	ck_assert(!h.is_unix);
	ck_assert_uint_eq(h.addr_family, 10);
	ck_assert_uint_eq(h.addr_port, 61000);
	ck_assert_uint_eq(h.addr_ip[0], 0xfe);
	ck_assert_uint_eq(h.addr_ip[15], 1);
	ck_assert_uint_eq(h.cancel_pid, 0x7fff0001);
	ck_assert_uint_eq(h.cancel_key, 0xdeadbeef);
	ck_assert_str_eq(h.db, "app");
	ck_assert_str_eq(h.user, "alice");
	ck_assert(h.have_scram_keys);
	ck_assert_uint_eq(h.scram_client_key[31], 0x5a);
	ck_assert_uint_eq(h.scram_server_key[0], 0xa5);
	ck_assert_str_eq(h.password, "pw");
	ck_assert_uint_eq(h.n_params, 2);
	ck_assert_str_eq(h.params[1].name, "TimeZone");
	ck_assert_str_eq(h.params[1].value, "Europe/Paris");
	ck_assert_uint_eq(h.n_prepared, 2);
	ck_assert_str_eq(h.prepared[0].name, "s1");
	ck_assert_uint_eq(h.prepared[0].text_len, sizeof(parse_text) - 1);
	ck_assert(memcmp(h.prepared[0].text, parse_text, sizeof(parse_text) - 1) == 0);
	ck_assert_uint_eq(h.prepared[1].text_len, 0);
	ck_assert_uint_eq(h.input_len, sizeof(input));
	ck_assert(memcmp(h.input, input, sizeof(input)) == 0);
	ck_assert(h.linked);
	ck_assert_uint_eq(h.server.id, 43);
	ck_assert_uint_eq(h.server.be_pid, 4711);
	ck_assert_uint_eq(h.server.be_key, 0xfeedface);
	ck_assert_int_eq(h.server.host_index, 1);
	ck_assert_int_eq(h.server.port, 5433);
	ck_assert_str_eq(h.server.addr, "/run/postgresql/.s.PGSQL.5433");
	ck_assert_str_eq(h.server.host, "");
	ck_assert_uint_eq(h.server.n_params, 2);
	ck_assert_str_eq(h.server.params[0].value, "app");
	handover_client_free(&h);

	buf_out_reset(&out);
	sample(&out, false);
	ck_assert_int_eq(handover_client_decode(out.data, out.len, &h), 0);
	ck_assert(h.is_unix);
	ck_assert_uint_eq(h.admin_role, 2);
	ck_assert_int_eq(h.peer_pid, 4242);
	ck_assert(!h.have_scram_keys);
	ck_assert(!h.linked);
	ck_assert_ptr_null(h.password);
	ck_assert_uint_eq(h.n_params + h.n_prepared + h.input_len, 0);
	handover_client_free(&h);
	buf_out_deinit(&out);
}
END_TEST

START_TEST(test_a_cut_or_padded_record_is_refused)
{
	struct buf_out out;
	buf_out_init(&out);
	sample(&out, true);
	struct handover_client h;
	for (size_t len = 0; len < out.len; len++)
		ck_assert_msg(handover_client_decode(out.data, len, &h) == -1, "cut at %zu", len);
	buf_out_put_u8(&out, 0);
	ck_assert_int_eq(handover_client_decode(out.data, out.len, &h), -1);
	buf_out_deinit(&out);
}
END_TEST

/* The offset of the parameter count: version, id, time, flags, role, address, pid, cancel key. */
static size_t params_at(const struct buf_out *out)
{
	size_t at = 4 + 8 + 8 + 1 + 1 + 1 + 2 + 16 + 4 + 8;
	at += strlen((const char *)out->data + at) + 1; /* database */
	at += strlen((const char *)out->data + at) + 1; /* user */
	return at + 64 + strlen((const char *)out->data + at + 64) + 1; /* keys, password */
}

static void put_be32_at(struct buf_out *out, size_t at, uint32_t v)
{
	out->data[at] = (uint8_t)(v >> 24);
	out->data[at + 1] = (uint8_t)(v >> 16);
	out->data[at + 2] = (uint8_t)(v >> 8);
	out->data[at + 3] = (uint8_t)v;
}

START_TEST(test_what_a_successor_must_not_believe_is_refused)
{
	struct buf_out out;
	buf_out_init(&out);
	struct handover_client h;

	sample(&out, true);
	put_be32_at(&out, 0, HANDOVER_VERSION + 1);
	ck_assert_int_eq(handover_client_decode(out.data, out.len, &h), -1);

	buf_out_reset(&out);
	sample(&out, true);
	out.data[20] |= 0x80; /* a flag this version does not know */
	ck_assert_int_eq(handover_client_decode(out.data, out.len, &h), -1);

	/* Counts beyond the bound, and beyond what the bytes could hold. */
	static const uint32_t counts[] = { 3, 1000, HANDOVER_MAX_PARAMS + 1, 0xffffffff };
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		buf_out_reset(&out);
		sample(&out, true);
		put_be32_at(&out, params_at(&out), counts[i]);
		ck_assert_int_eq(handover_client_decode(out.data, out.len, &h), -1);
	}
	buf_out_reset(&out);
	sample(&out, false);
	put_be32_at(&out, out.len - 4, 0x7fffffff); /* the input's length, its last field */
	ck_assert_int_eq(handover_client_decode(out.data, out.len, &h), -1);
	buf_out_deinit(&out);
}
END_TEST

/* FNV-1a, enough to notice that bytes changed. */
static uint32_t fnv1a(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

/*
 * The bytes of a fixed record, pinned for this version: a change of the
 * layout without a new HANDOVER_VERSION would let an older successor
 * misread the clients a newer process hands it (or the other way round),
 * and lose them. Change the layout, bump the version, then update these.
 */
START_TEST(test_the_layout_is_pinned_to_its_version)
{
	struct buf_out out;
	buf_out_init(&out);
	sample(&out, true);
	ck_assert_int_eq(HANDOVER_VERSION, 2);
	ck_assert_msg(out.len == PINNED_LEN && fnv1a(out.data, out.len) == PINNED_HASH,
		      "the record's layout changed (%zu bytes, hash %#x): bump HANDOVER_VERSION "
		      "and pin the new layout here",
		      out.len, fnv1a(out.data, out.len));
	buf_out_deinit(&out);
}
END_TEST

static Suite *handover_suite(void)
{
	Suite *s = suite_create("handover");
	TCase *tc = tcase_create("handover");
	tcase_add_test(tc, test_a_record_reads_back_as_written);
	tcase_add_test(tc, test_a_cut_or_padded_record_is_refused);
	tcase_add_test(tc, test_what_a_successor_must_not_believe_is_refused);
	tcase_add_test(tc, test_the_layout_is_pinned_to_its_version);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(handover_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
