/*
 * check_man.c - the man pages the build makes (doc/meson.build) against what
 * they document: sluice.ini(5) has a subsection for every setting of the
 * config table, sluice(1) every option `sluice --help` lists and the
 * sections a command's page has, and both carry the version the binary
 * prints (its --version, whose first line is SHOW VERSION's answer).
 *
 * It reads the generated roff, not doc/'s markdown: what is checked is what
 * `meson install` installs. meson test names the files and the binary in
 * SLUICE_MAN1, SLUICE_MAN5 and SLUICE_BIN; this suite exists only in builds
 * that make the man pages (scdoc found).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice_version.h"

/* The value of an environment variable meson test sets, or the test fails. */
static const char *need_env(const char *name)
{
	const char *v = getenv(name);
	ck_assert_msg(v != NULL && *v, "%s is not set (meson test sets it)", name);
	return v;
}

/* The whole of a file, NUL-terminated; the caller frees it. */
static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	size_t len = 0, cap = 4096;
	char *s = xmalloc(cap);
	size_t got;
	while ((got = fread(s + len, 1, cap - len - 1, f)) > 0) {
		len += got;
		if (cap - len - 1 == 0)
			s = xrealloc(s, cap *= 2);
	}
	s[len] = '\0';
	fclose(f);
	return s;
}

/* What a command prints on its standard output; the caller frees it. */
static char *run(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	ck_assert_msg(p != NULL, "cannot run %s", cmd);
	char *out = xmalloc(65536);
	size_t n = fread(out, 1, 65535, p);
	out[n] = '\0';
	int rc = pclose(p);
	ck_assert_msg(rc == 0, "%s exited with status %d", cmd, rc);
	return out;
}

/* Line i (from 0) of text, without its newline; the caller frees it. */
static char *line_at(const char *text, int i)
{
	for (; i > 0 && text; i--) {
		text = strchr(text, '\n');
		if (text)
			text++;
	}
	ck_assert_ptr_nonnull(text);
	return xstrndup(text, strcspn(text, "\n"));
}

/*
 * The source field of a page's .TH line (its fourth argument, the footer
 * man shows at the left): .TH "SLUICE" "1" "date" "sluice 0.1.0" "manual".
 * The caller frees it.
 */
static char *th_source(const char *page, const char *path)
{
	const char *th = strstr(page, "\n.TH ");
	ck_assert_msg(th != NULL, "%s has no .TH line", path);
	const char *p = th + 5;
	for (int field = 0; field < 3; field++) {
		p = strchr(p, '"');
		ck_assert_msg(p != NULL, "%s: short .TH line", path);
		p = strchr(p + 1, '"');
		ck_assert_msg(p != NULL, "%s: unterminated .TH field", path);
		p++;
	}
	p = strchr(p, '"');
	ck_assert_msg(p != NULL, "%s: .TH has no source field", path);
	return xstrndup(p + 1, strcspn(p + 1, "\"\n"));
}

START_TEST(test_man_ini_page_has_a_subsection_for_every_setting)
{
	const char *path = need_env("SLUICE_MAN5");
	char *page = read_file(path);
	for (size_t i = 0; i < config_setting_count(); i++) {
		const char *name = config_setting_at(i)->name;
		char *heading = xasprintf("\n.SS %s\n", name);
		ck_assert_msg(strstr(page, heading) != NULL,
			      "%s has no subsection for the setting %s (doc/config.md: \"### %s\")",
			      path, name, name);
		free(heading);
	}
	free(page);
}
END_TEST

START_TEST(test_man_command_page_documents_every_option_of_help)
{
	const char *path = need_env("SLUICE_MAN1");
	char *page = read_file(path);
	char *cmd = xasprintf("'%s' --help", need_env("SLUICE_BIN"));
	char *help = run(cmd);
	size_t options = 0;
	/* Option lines of --help start with two spaces and a dash: "  -d, --daemon   run ...". */
	char *save_line, *save_word;
	for (char *l = strtok_r(help, "\n", &save_line); l; l = strtok_r(NULL, "\n", &save_line)) {
		if (strncmp(l, "  -", 3) != 0)
			continue;
		for (char *w = strtok_r(l, " ", &save_word); w && *w == '-';
		     w = strtok_r(NULL, " ", &save_word)) {
			/* "-u," and "--user=USER" name -u and --user. */
			char *bold = xasprintf("\\fB%.*s", (int)strcspn(w, ",="), w);
			ck_assert_msg(strstr(page, bold) != NULL, "%s does not document %s", path,
				      bold + 3);
			free(bold);
			options++;
		}
	}
	ck_assert_uint_ge(options, 12); /* -d --daemon ... -h --help */
	static const char *const sections[] = {
		"SYNOPSIS", "OPTIONS", "SIGNALS", "FILES", "ENVIRONMENT", "EXIT STATUS", "SEE ALSO",
	};
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++) {
		char *sh = xasprintf("\n.SH %s\n", sections[i]);
		ck_assert_msg(strstr(page, sh) != NULL, "%s has no %s section", path, sections[i]);
		free(sh);
	}
	free(help);
	free(cmd);
	free(page);
}
END_TEST

/*
 * -V prints SHOW VERSION's line (SLUICE_PRODUCT), then "sluice <version>";
 * both pages' footers say the second. All three come from meson's project
 * version, and this is where a page made by another build would show.
 */
START_TEST(test_man_pages_carry_the_version_sluice_prints)
{
	char *cmd = xasprintf("'%s' --version", need_env("SLUICE_BIN"));
	char *out = run(cmd);
	char *first = line_at(out, 0), *second = line_at(out, 1);
	ck_assert_str_eq(first, SLUICE_PRODUCT);
	ck_assert_str_eq(second, "sluice " SLUICE_VERSION);
	const char *vars[] = { "SLUICE_MAN1", "SLUICE_MAN5" };
	for (size_t i = 0; i < ARRAY_SIZE(vars); i++) {
		const char *path = need_env(vars[i]);
		char *page = read_file(path);
		char *source = th_source(page, path);
		ck_assert_msg(strcmp(source, second) == 0, "%s says \"%s\", sluice --version \"%s\"",
			      path, source, second);
		free(source);
		free(page);
	}
	free(first);
	free(second);
	free(out);
	free(cmd);
}
END_TEST

static Suite *man_suite(void)
{
	Suite *s = suite_create("man");
	TCase *tc = tcase_create("pages");
	tcase_add_test(tc, test_man_ini_page_has_a_subsection_for_every_setting);
	tcase_add_test(tc, test_man_command_page_documents_every_option_of_help);
	tcase_add_test(tc, test_man_pages_carry_the_version_sluice_prints);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(man_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
