/*
 * toml.h - a TOML 1.0 parser (internal to libkvshard).
 *
 * Parses a whole document into a tree of values. Every value and every key
 * remembers the line and column (1-based; columns count bytes) where it was
 * written, so that the config module can point at mistakes. Errors carry the
 * position of the offending character and a message.
 *
 * Only the config module and the toml-decoder test program use this.
 */
#ifndef KVS_TOML_H
#define KVS_TOML_H

#include <stddef.h>
#include <stdint.h>

typedef enum kvs__toml_type {
	KVS_TOML_TABLE,
	KVS_TOML_ARRAY,
	KVS_TOML_STRING,
	KVS_TOML_INTEGER,
	KVS_TOML_FLOAT,
	KVS_TOML_BOOL,
	KVS_TOML_DATETIME,       /* offset date-time */
	KVS_TOML_DATETIME_LOCAL, /* local date-time */
	KVS_TOML_DATE_LOCAL,     /* local date */
	KVS_TOML_TIME_LOCAL      /* local time */
} kvs__toml_type;

/*
 * A date, time or both. Fields that the type does not have are 0.
 * nanosecond holds the fraction of a second; frac_digits how many digits
 * were written (0: none), so a printer can reproduce the precision.
 * offset_minutes is only meaningful for KVS_TOML_DATETIME (Z is 0).
 */
typedef struct kvs__toml_datetime {
	int year, month, day;
	int hour, minute, second;
	long nanosecond;
	int frac_digits;
	int offset_minutes;
} kvs__toml_datetime;

typedef struct kvs__toml_value kvs__toml_value;

typedef struct kvs__toml_keyval {
	char *key; /* UTF-8, NUL-terminated; key_len excludes the NUL */
	size_t key_len;
	unsigned line, col; /* where this key was (first) written */
	kvs__toml_value *value;
} kvs__toml_keyval;

struct kvs__toml_value {
	kvs__toml_type type;
	unsigned line, col; /* where the value (or table header) starts */
	union {
		struct {
			char *ptr; /* UTF-8, NUL-terminated; may contain NUL */
			size_t len;
		} str;
		int64_t integer;
		double flt;
		int boolean;
		kvs__toml_datetime dt;
		struct {
			kvs__toml_value **items;
			size_t len;
		} arr;
		struct {
			kvs__toml_keyval *items; /* in the order first defined */
			size_t len;
		} tab;
	} u;
};

#define KVS_TOML_ERRMSG 200

typedef struct kvs__toml_error {
	unsigned line, col; /* 1-based position of the problem */
	char msg[KVS_TOML_ERRMSG];
} kvs__toml_error;

/**
 * Parse a TOML 1.0 document of len bytes (need not be NUL-terminated).
 *
 * @param root receives the root table (free with kvs__toml_free); NULL on
 *             error.
 * @param err  receives the position and message on error; may be NULL.
 * @return 0 on success, -1 on a syntax or semantic error (err filled),
 *         -2 when out of memory.
 */
int kvs__toml_parse(const char *text, size_t len, kvs__toml_value **root,
                    kvs__toml_error *err);

/** Free a tree returned by kvs__toml_parse; accepts NULL. */
void kvs__toml_free(kvs__toml_value *v);

/**
 * Look up key in a table value. Returns the keyval (borrowed) or NULL when
 * absent or when table is not a table.
 */
const kvs__toml_keyval *kvs__toml_find(const kvs__toml_value *table,
                                       const char *key);

/** Name of a type as TOML documents say it ("string", "integer", ...). */
const char *kvs__toml_type_name(kvs__toml_type t);

#endif /* KVS_TOML_H */
