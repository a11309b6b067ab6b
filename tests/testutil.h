/*
 * testutil.h - helpers shared by the Check tests: temporary directories,
 * paths into the build tree, bounded waits.
 */
#ifndef KVS_TESTUTIL_H
#define KVS_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* Run suite s (and free it): the exit status of a test program. */
int tu_run(Suite *s);

/* A fresh empty directory under $TMPDIR; the path is static storage reused
 * by the next call (copy it if you need two). Aborts the test on failure. */
const char *tu_mkdtemp(void);

/* Remove a directory tree (best effort). */
void tu_rmtree(const char *path);

/* Monotonic milliseconds. */
uint64_t tu_now_ms(void);

/* Path of a file in the build tree ($KVS_BUILD_ROOT/rel), static storage. */
const char *tu_build_path(const char *rel);

/* Path of a file in the source tree ($KVS_SOURCE_ROOT/rel), static storage. */
const char *tu_source_path(const char *rel);

/* Drop (empty) the LMDB database name of the environment in dir, which
 * no process may have open: what a store looks like without it. */
void tu_lmdb_drop(const char *dir, const char *name);

/* Write len bytes to a new file; returns 0 or -1. */
int tu_write_file(const char *path, const void *data, size_t len);

/* The whole file as a NUL-terminated string (free it); fails the test
 * if it cannot be read. */
char *tu_read_file(const char *path);

/* Run a shell command: its output (what it writes to stdout: redirect
 * stderr there to have both) in out (cap bytes, NUL-terminated), and
 * its exit status (-1 if it did not exit). */
int tu_run_command(const char *cmd, char *out, size_t cap);

#endif
