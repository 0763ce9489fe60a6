/* How fast this machine can stream memory into the cores: the ceiling for
 * token generation, which reads every active weight once per token. */
#ifndef G4_MEMBW_H
#define G4_MEMBW_H

#include <stddef.h>

/* Read bandwidth in GB/s (1e9 bytes/s) of n_threads threads each streaming
 * its own slice of a `bytes` buffer (well beyond the caches: hundreds of
 * MiB), best of `passes` whole-buffer passes. -1 if the buffer cannot be
 * allocated. */
double g4_membw_read_gbps(int n_threads, size_t bytes, int passes);

#endif
