/*
 * fuzz_sqlscan.c - fuzz target for the look at client SQL (sqlscan.c): the
 * input is a Query's text. Whatever it holds, the cheap look and
 * PostgreSQL's parser must not crash or leak, and the cheap look must
 * never miss what the parser finds: a text whose statements change session
 * settings is flagged by the first look too, or sluice would not ask the
 * server after it. What session_pinning = refuse would refuse is flagged
 * too, and the text sent instead makes no pin that would run.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/sqlscan.h"

/* Query texts are bounded by max_packet_size; the parser is linear, a cap keeps runs quick. */
#define FUZZ_MAX_INPUT (16u * 1024u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT)
		size = FUZZ_MAX_INPUT;
	/* The text ends at its first NUL, as a Query's does. */
	const uint8_t *nul = memchr(data, 0, size);
	if (nul)
		size = (size_t)(nul - data);
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = 0;
	unsigned cheap = sql_scan_cheap(text, size);
	struct sql_scan_result r;
	sql_scan_parse(text, &r);
	FUZZ_CHECK((r.effects & ~cheap) == 0);
	FUZZ_CHECK(r.n_custom >= 0 && r.n_custom <= SQL_SCAN_CUSTOM_MAX);
	/*
	 * session_pinning = refuse looks only at what the cheap look flags as
	 * maybe pinning; what it would refuse is within the text, and the text
	 * that refuses it makes no pin before the statements it skips.
	 */
	if (r.pin_made != SQL_PIN_MADE_NONE) {
		FUZZ_CHECK(cheap & SQL_EFFECT_PINS);
		FUZZ_CHECK(r.pin_what && r.pin_at + r.pin_len <= size);
		char *refused = sql_scan_refusal(text, &r, "transaction");
		FUZZ_CHECK(refused != NULL);
		struct sql_scan_result rr;
		sql_scan_parse(refused, &rr);
		FUZZ_CHECK(rr.pin_made == SQL_PIN_MADE_NONE || rr.pin_at > r.pin_at);
		sql_scan_result_deinit(&rr);
		free(refused);
	}
	for (int i = 0; i < r.n_custom; i++)
		FUZZ_CHECK(strchr(r.custom[i], '.') != NULL);
	sql_scan_result_deinit(&r);
	free(text);
	return 0;
}
