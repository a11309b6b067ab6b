/*
 * test_install.c - `meson install` into a scratch DESTDIR gives headers,
 * libraries and kvshard.pc, and examples/pkgconfig/hello.c builds with
 * nothing but `pkg-config --cflags --libs kvshard` and runs.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

/* Run a shell command; its output goes to out (cap bytes). */
static int run(const char *cmd, char *out, size_t cap)
{
	FILE *f = popen(cmd, "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(out, 1, cap - 1, f);
	out[n] = '\0';
	return pclose(f);
}

START_TEST(install_then_build_with_pkg_config)
{
	char dest[512], cmd[4096], out[8192], pcdir[1024], libdir[1024];
	const char *cc = getenv("CC");
	const char *san = getenv("KVS_SANITIZE_CFLAGS");
	struct stat st;

	snprintf(dest, sizeof(dest), "%s", tu_mkdtemp());
	snprintf(cmd, sizeof(cmd),
	         "meson install -C '%s' --no-rebuild --quiet --destdir '%s' 2>&1",
	         tu_build_path(""), dest);
	ck_assert_msg(run(cmd, out, sizeof(out)) == 0, "meson install: %s", out);

	snprintf(cmd, sizeof(cmd), "dirname \"$(find '%s' -name kvshard.pc | head -n1)\"",
	         dest);
	ck_assert_int_eq(run(cmd, pcdir, sizeof(pcdir)), 0);
	pcdir[strcspn(pcdir, "\n")] = '\0';
	ck_assert_msg(strlen(pcdir) > strlen(dest), "no kvshard.pc installed");
	snprintf(libdir, sizeof(libdir), "%s", pcdir);
	*strrchr(libdir, '/') = '\0'; /* .../lib/<triplet> */

	/* Headers and both libraries are there. */
	snprintf(cmd, sizeof(cmd), "%s/usr/local/include/kvshard.h", dest);
	ck_assert_int_eq(stat(cmd, &st), 0);
	snprintf(cmd, sizeof(cmd), "%s/usr/local/include/kvshard/store.h", dest);
	ck_assert_int_eq(stat(cmd, &st), 0);
	snprintf(cmd, sizeof(cmd), "%s/libkvshard.a", libdir);
	ck_assert_int_eq(stat(cmd, &st), 0);
	snprintf(cmd, sizeof(cmd), "%s/libkvshard.so", libdir);
	ck_assert_int_eq(stat(cmd, &st), 0);

	/* Build the example with pkg-config's flags only, and run it. */
	snprintf(cmd, sizeof(cmd),
	         "cd '%s' && %s %s '%s' $(PKG_CONFIG_SYSROOT_DIR='%s' "
	         "PKG_CONFIG_PATH='%s' pkg-config --cflags --libs kvshard) "
	         "-o hello 2>&1 && LD_LIBRARY_PATH='%s' ./hello 2>&1",
	         dest, cc && *cc ? cc : "cc", san ? san : "",
	         tu_source_path("examples/pkgconfig/hello.c"), dest, pcdir,
	         libdir);
	ck_assert_msg(run(cmd, out, sizeof(out)) == 0, "%s", out);
	ck_assert_msg(strstr(out, "mykey -> shard-3") != NULL, "output: %s", out);
	tu_rmtree(dest);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("install");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, install_then_build_with_pkg_config);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
