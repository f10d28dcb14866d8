/* The splice(2) data path of a pair (pair.h): a direction that carries bulk moves its bytes through a
 * pipe of its own, socket → pipe → socket, without copying them to user space. See docs/native.md. */
#ifndef TWINPORT_SPLICE_H
#define TWINPORT_SPLICE_H

#include <stddef.h>

#include "pair.h"

/* pair_loop.splice_mode: which transfers go through a pipe (TWINPORT_NATIVE_SPLICE). */
enum splice_mode {
  SPLICE_OFF = 0,    /* recv/send only */
  SPLICE_AUTO = 1,   /* a direction switches to its pipe after a read that filled the scratch buffer */
  SPLICE_ALWAYS = 2, /* every direction reads into its pipe from its first byte */
};

/* A direction's pipe, open while the pair lives once the direction switched to it. */
struct pair_pipe {
  int rd;
  int wr;
  size_t len; /* bytes in the pipe: read from the source, not yet taken by the writer */
};

/* Bytes direction d read and has not written yet, wherever they wait. */
static inline int dir_pending(const struct pair_dir *d) { return d->pend != NULL || (d->pipe != NULL && d->pipe->len > 0); }

/* Sets the mode for pairs started from now on, and the loop's pipe budget. */
void splice_set_mode(struct pair_loop *pl, int mode);

/* At pair_start: the loop's mode becomes the pair's (a pair not started, the self-check's, stays off). */
void splice_init(struct pair *p);

/* Whether direction k moves through its pipe now; in `always` mode this opens the pipe first. */
int splice_on(struct pair *p, int k);

/* After a read that filled the scratch buffer and was written whole: in `auto` mode direction k switches
 * to its pipe. 1 when it did, 0 when it stays on recv/send (mode, or no descriptor for a pipe). */
int splice_bulk(struct pair *p, int k);

/* splice_on's read side of pair.c's pump: source → pipe → destination until the source is empty, the
 * destination is full (bytes stay in the pipe, the source is not read again until they are written), FIN
 * or the read budget. Returns 0 or -errno with *err_side set. */
int splice_pump(struct pair *p, int k, int reads_max, int *err_side);

/* Writes what waits in direction k's pipe to the other side: 0 (maybe some left) or -errno. */
int splice_flush(struct pair *p, int k);

/* Closes the pair's pipes (what they hold is dropped with the pair). */
void splice_close(struct pair *p);

/* Moves a few bytes socket → pipe → socket on two socketpairs: NULL, or what failed. */
const char *splice_self_check(void);

#endif
