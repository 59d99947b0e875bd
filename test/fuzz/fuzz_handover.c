/*
 * fuzz_handover.c - fuzz target for a handed-over client's record
 * (handover.c), which a new process reads from the old one in an online
 * restart.
 *
 * handover_client_decode must answer 0 or -1 and never read outside the
 * input (the input is copied to an exact-size buffer, so ASan sees any
 * overrun); a decoded record's strings end within the input, its counts
 * are within the bounds, and written again it gives back exactly the
 * bytes it was read from: the format has one spelling per record.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/handover.h"

/* Records carry prepared statements, but the fuzzer learns nothing from megabytes. */
#define FUZZ_MAX_INPUT (256u * 1024u)

static bool inside(const void *p, const uint8_t *data, size_t size)
{
	return (const uint8_t *)p >= data && (const uint8_t *)p < data + size;
}

static bool string_inside(const char *s, const uint8_t *data, size_t size)
{
	return s && inside(s, data, size) &&
	       memchr(s, '\0', (size_t)(data + size - (const uint8_t *)s)) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
	if (size > FUZZ_MAX_INPUT)
		return 0;
	uint8_t *data = malloc(size ? size : 1);
	FUZZ_CHECK(data != NULL);
	memcpy(data, input, size);
	struct handover_client h;
	memset(&h, 0xAA, sizeof(h));
	int rc = handover_client_decode(data, size, &h);
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc == 0) {
		FUZZ_CHECK(string_inside(h.db, data, size) && string_inside(h.user, data, size));
		FUZZ_CHECK(!h.password || string_inside(h.password, data, size));
		FUZZ_CHECK(h.n_params <= HANDOVER_MAX_PARAMS);
		FUZZ_CHECK(h.n_prepared <= HANDOVER_MAX_PREPARED);
		for (uint32_t i = 0; i < h.n_params; i++)
			FUZZ_CHECK(string_inside(h.params[i].name, data, size) &&
				   string_inside(h.params[i].value, data, size));
		for (uint32_t i = 0; i < h.n_prepared; i++)
			FUZZ_CHECK(string_inside(h.prepared[i].name, data, size) &&
				   (h.prepared[i].text_len == 0 ||
				    (inside(h.prepared[i].text, data, size) &&
				     h.prepared[i].text_len <=
					     (size_t)(data + size - h.prepared[i].text))));
		FUZZ_CHECK(h.input_len == 0 || (inside(h.input, data, size) &&
						 h.input_len <= (size_t)(data + size - h.input)));
		if (h.linked) {
			FUZZ_CHECK(string_inside(h.server.addr, data, size) &&
				   string_inside(h.server.host, data, size));
			FUZZ_CHECK(h.server.n_params <= HANDOVER_MAX_PARAMS);
			for (uint32_t i = 0; i < h.server.n_params; i++)
				FUZZ_CHECK(string_inside(h.server.params[i].name, data, size) &&
					   string_inside(h.server.params[i].value, data, size));
		}
		struct buf_out out;
		buf_out_init(&out);
		handover_client_encode(&out, &h);
		FUZZ_CHECK(out.len == size && memcmp(out.data, data, size) == 0);
		buf_out_deinit(&out);
		handover_client_free(&h);
	}
	free(data);
	return 0;
}
