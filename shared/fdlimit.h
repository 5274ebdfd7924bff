/* fdlimit.h - as many file descriptors as the system lets us have.
 *
 * A super node holding 19,000 leaves needs a descriptor per session; the
 * soft RLIMIT_NOFILE is often 1024 while the hard one (systemd's
 * LimitNOFILE, or the shell's ulimit -Hn) is far higher. A process may
 * raise its soft limit up to the hard one on its own, so it does at start. */
#ifndef CANOPY_FDLIMIT_H
#define CANOPY_FDLIMIT_H

#include <stdint.h>

/* Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit
 * in force afterwards (0 if it cannot be read). */
uint64_t fdlimit_raise(void);

#endif
