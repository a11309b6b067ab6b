/*
 * hello.c - the smallest program using an installed libkvshard.
 *
 * Build it with nothing but pkg-config, after `meson install`:
 *
 *     cc hello.c $(pkg-config --cflags --libs kvshard) -o hello
 *
 * tests/test_install.c does exactly this into a scratch DESTDIR.
 */
#include <stdio.h>
#include <string.h>

#include <kvshard.h>

int main(void)
{
	static const kvs_ring_member shards[] = {
		{"shard-1", 1.0}, {"shard-2", 1.0}, {"shard-3", 1.0},
	};
	kvs_ring *ring;
	size_t owner;

	if (kvs_ring_new(&ring, shards, 3, 0) != KVS_OK)
		return 1;
	kvs_ring_owners(ring, "mykey", strlen("mykey"), &owner, 1);
	printf("libkvshard %s: mykey -> %s\n", kvs_version(),
	       kvs_ring_member_name(ring, owner));
	kvs_ring_free(ring);
	return 0;
}
