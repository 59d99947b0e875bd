/*
 * handover.c - a handed-over client's record, written and read (handover.h).
 *
 * Layout, in order: be32 version; be64 id; be64 connect time; u8 flags
 * (1: unix socket, 2: SCRAM keys follow, 4: a password follows); u8 admin
 * role; u8 address family, be16 port, 16 address bytes; be32 peer pid; be32
 * cancel pid, be32 cancel key; cstr database, cstr user; [32 + 32 key
 * bytes]; [cstr password]; be32 parameter count, (cstr name, cstr value)
 * each; be32 prepared count, (cstr name, be32 length, that many bytes) each;
 * be32 input length, that many bytes; with flag 8 (linked), the server:
 * be64 id, be64 connect time, be32 pid, be32 key, be32 host index, be32
 * port, cstr address, cstr host, be32 parameter count and the parameters.
 * Nothing may follow.
 */
#include "sluice/handover.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/pkt.h"

enum {
	FLAG_UNIX = 1,
	FLAG_SCRAM_KEYS = 2,
	FLAG_PASSWORD = 4,
	FLAG_LINKED = 8,
	FLAGS_KNOWN = FLAG_UNIX | FLAG_SCRAM_KEYS | FLAG_PASSWORD | FLAG_LINKED,
};

static void put_be64(struct buf_out *out, uint64_t v)
{
	buf_out_put_be32(out, (uint32_t)(v >> 32));
	buf_out_put_be32(out, (uint32_t)v);
}

static void put_params(struct buf_out *out, const struct handover_param *ps, uint32_t n)
{
	buf_out_put_be32(out, n);
	for (uint32_t i = 0; i < n; i++) {
		buf_out_put_cstr(out, ps[i].name);
		buf_out_put_cstr(out, ps[i].value);
	}
}

void handover_client_encode(struct buf_out *out, const struct handover_client *h)
{
	buf_out_put_be32(out, HANDOVER_VERSION);
	put_be64(out, h->id);
	put_be64(out, h->connect_time_ms);
	buf_out_put_u8(out, (uint8_t)((h->is_unix ? FLAG_UNIX : 0) |
				      (h->have_scram_keys ? FLAG_SCRAM_KEYS : 0) |
				      (h->password ? FLAG_PASSWORD : 0) |
				      (h->linked ? FLAG_LINKED : 0)));
	buf_out_put_u8(out, h->admin_role);
	buf_out_put_u8(out, h->addr_family);
	buf_out_put_be16(out, h->addr_port);
	buf_out_put(out, h->addr_ip, sizeof(h->addr_ip));
	buf_out_put_be32(out, (uint32_t)h->peer_pid);
	buf_out_put_be32(out, h->cancel_pid);
	buf_out_put_be32(out, h->cancel_key);
	buf_out_put_cstr(out, h->db);
	buf_out_put_cstr(out, h->user);
	if (h->have_scram_keys) {
		buf_out_put(out, h->scram_client_key, 32);
		buf_out_put(out, h->scram_server_key, 32);
	}
	if (h->password)
		buf_out_put_cstr(out, h->password);
	put_params(out, h->params, h->n_params);
	buf_out_put_be32(out, h->n_prepared);
	for (uint32_t i = 0; i < h->n_prepared; i++) {
		buf_out_put_cstr(out, h->prepared[i].name);
		buf_out_put_be32(out, h->prepared[i].text_len);
		buf_out_put(out, h->prepared[i].text, h->prepared[i].text_len);
	}
	buf_out_put_be32(out, h->input_len);
	buf_out_put(out, h->input, h->input_len);
	if (h->linked) {
		const struct handover_server *sv = &h->server;
		put_be64(out, sv->id);
		put_be64(out, sv->connect_time_ms);
		buf_out_put_be32(out, sv->be_pid);
		buf_out_put_be32(out, sv->be_key);
		buf_out_put_be32(out, (uint32_t)sv->host_index);
		buf_out_put_be32(out, (uint32_t)sv->port);
		buf_out_put_cstr(out, sv->addr);
		buf_out_put_cstr(out, sv->host);
		put_params(out, sv->params, sv->n_params);
	}
}

static uint64_t get_be64(struct pkt_reader *r)
{
	uint64_t hi = pkt_get_be32(r);
	return hi << 32 | pkt_get_be32(r);
}

/* A count of items each at least min_size bytes long, no more than max and than what is left. */
static bool count_ok(const struct pkt_reader *r, uint32_t n, uint32_t max, size_t min_size)
{
	return !r->bad && n <= max && n <= pkt_remaining(r) / min_size;
}

/* A parameter count and the parameters, into an array of *n (allocated); false: malformed. */
static bool get_params(struct pkt_reader *r, struct handover_param **ps, uint32_t *n)
{
	uint32_t count = pkt_get_be32(r);
	/* Each parameter is two strings, so two bytes at least. */
	if (!count_ok(r, count, HANDOVER_MAX_PARAMS, 2))
		return false;
	*ps = count ? xcalloc(count, sizeof(**ps)) : NULL;
	for (*n = 0; *n < count && !r->bad; (*n)++) {
		(*ps)[*n].name = pkt_get_cstr(r);
		(*ps)[*n].value = pkt_get_cstr(r);
	}
	return !r->bad;
}

int handover_client_decode(const uint8_t *p, size_t len, struct handover_client *h)
{
	memset(h, 0, sizeof(*h));
	struct pkt_reader r;
	pkt_reader_init(&r, p, len);
	if (pkt_get_be32(&r) != HANDOVER_VERSION)
		return -1;
	h->id = get_be64(&r);
	h->connect_time_ms = get_be64(&r);
	uint8_t flags = pkt_get_u8(&r);
	if (flags & ~FLAGS_KNOWN)
		return -1;
	h->is_unix = flags & FLAG_UNIX;
	h->admin_role = pkt_get_u8(&r);
	h->addr_family = pkt_get_u8(&r);
	h->addr_port = pkt_get_be16(&r);
	const uint8_t *ip = pkt_get_bytes(&r, sizeof(h->addr_ip));
	if (ip)
		memcpy(h->addr_ip, ip, sizeof(h->addr_ip));
	h->peer_pid = (int32_t)pkt_get_be32(&r);
	h->cancel_pid = pkt_get_be32(&r);
	h->cancel_key = pkt_get_be32(&r);
	h->db = pkt_get_cstr(&r);
	h->user = pkt_get_cstr(&r);
	if (flags & FLAG_SCRAM_KEYS) {
		const uint8_t *ck = pkt_get_bytes(&r, 32);
		const uint8_t *sk = pkt_get_bytes(&r, 32);
		if (ck && sk) {
			memcpy(h->scram_client_key, ck, 32);
			memcpy(h->scram_server_key, sk, 32);
			h->have_scram_keys = true;
		}
	}
	if (flags & FLAG_PASSWORD)
		h->password = pkt_get_cstr(&r);
	if (!get_params(&r, &h->params, &h->n_params))
		goto bad;
	uint32_t n = pkt_get_be32(&r);
	/* A name (one byte at least) and a length. */
	if (!count_ok(&r, n, HANDOVER_MAX_PREPARED, 5))
		goto bad;
	h->prepared = n ? xcalloc(n, sizeof(*h->prepared)) : NULL;
	for (; h->n_prepared < n && !r.bad; h->n_prepared++) {
		struct handover_prepared *hp = &h->prepared[h->n_prepared];
		hp->name = pkt_get_cstr(&r);
		hp->text_len = pkt_get_be32(&r);
		hp->text = pkt_get_bytes(&r, hp->text_len);
	}
	h->input_len = pkt_get_be32(&r);
	h->input = pkt_get_bytes(&r, h->input_len);
	if (flags & FLAG_LINKED) {
		struct handover_server *sv = &h->server;
		h->linked = true;
		sv->id = get_be64(&r);
		sv->connect_time_ms = get_be64(&r);
		sv->be_pid = pkt_get_be32(&r);
		sv->be_key = pkt_get_be32(&r);
		sv->host_index = (int32_t)pkt_get_be32(&r);
		sv->port = (int32_t)pkt_get_be32(&r);
		sv->addr = pkt_get_cstr(&r);
		sv->host = pkt_get_cstr(&r);
		if (!get_params(&r, &sv->params, &sv->n_params))
			goto bad;
	}
	if (r.bad || pkt_remaining(&r) != 0)
		goto bad;
	return 0;
bad:
	handover_client_free(h);
	return -1;
}

void handover_client_free(struct handover_client *h)
{
	free(h->params);
	free(h->prepared);
	free(h->server.params);
	memset(h, 0, sizeof(*h));
}
