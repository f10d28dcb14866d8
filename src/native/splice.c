/* splice(2) for the bulk of a pair (splice.h). HAProxy's splice-auto idea: a direction starts on
 * recv/send through the loop's scratch buffer (cheapest for small exchanges: two syscalls, no pipe), and
 * once one read filled the whole scratch buffer the transfer is bulk, so the direction opens a pipe and
 * from then on moves its bytes socket → pipe → socket with two splice calls, never copying them to user
 * space. The pipe is the direction's only buffer: while it holds bytes the writer did not take, the source
 * is not read (backpressure bounded by the pipe's capacity, 64 KiB by default), and FIN is passed on only
 * once it is empty. A pipe that cannot be had (EMFILE, ENFILE, ENOMEM) leaves the pair on recv/send. */
#define _GNU_SOURCE
#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Asked of one splice from the socket: the pipe's default capacity takes at most this much. */
#define SPLICE_READ (64 * 1024)
#define SPLICE_FLAGS (SPLICE_F_MOVE | SPLICE_F_NONBLOCK)

/* A pipe failed to open for this pair: it stays on recv/send. */
#define SPLICE_REFUSED (-1)

/* The connection ceiling gives every descriptor to connections (two each): pipes take them from the same
 * RLIMIT_NOFILE, so they get at most a quarter of it (HAProxy's maxpipes default, maxconn/4, is the same
 * share). Past it a pair stays on recv/send, as when pipe2 fails. */
void splice_set_mode(struct pair_loop *pl, int mode) {
  struct rlimit rl;
  rlim_t budget = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) budget = rl.rlim_cur;
  budget /= 8;
  pl->pipes_max = budget > 65536 ? 65536 : budget < 1 ? 1 : (unsigned)budget;
  pl->splice_mode = mode;
}

void splice_init(struct pair *p) {
  p->splice = p->pl->splice_mode;
}

static void pipe_free(struct pair_loop *pl, struct pair_pipe *pp) {
  pl->pipes--;
  (void)close(pp->rd);
  (void)close(pp->wr);
  free(pp);
}

/* Opens direction k's pipe. Any failure (the budget spent, no descriptor left, no memory) is not the
 * pair's: both directions stay on recv/send, so that a pair never waits for a descriptor. */
static int pipe_open(struct pair *p, int k) {
  struct pair_pipe *pp = p->pl->pipes < p->pl->pipes_max ? malloc(sizeof *pp) : NULL;
  int fds[2];
  if (pp == NULL || pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    free(pp);
    p->splice = SPLICE_REFUSED;
    return 0;
  }
  pp->rd = fds[0];
  pp->wr = fds[1];
  pp->len = 0;
  p->dir[k].pipe = pp;
  p->pl->pipes++;
  p->pl->pipes_opened++;
  return 1;
}

int splice_on(struct pair *p, int k) {
  struct pair_dir *d = &p->dir[k];
  if (d->pipe != NULL) return 1;
  return p->splice == SPLICE_ALWAYS && pipe_open(p, k);
}

int splice_bulk(struct pair *p, int k) {
  return p->dir[k].pipe == NULL && p->splice == SPLICE_AUTO && pipe_open(p, k);
}

int splice_flush(struct pair *p, int k) {
  struct pair_pipe *pp = p->dir[k].pipe;
  struct pair_side *dst = &p->side[1 - k];
  while (pp->len > 0) {
    ssize_t n = splice(pp->rd, NULL, dst->fd, NULL, pp->len, SPLICE_FLAGS);
    if (n > 0) {
      pp->len -= (size_t)n;
      dst->bytes_written += (uint64_t)n;
      p->pl->spliced += (uint64_t)n;
      continue;
    }
    if (n == 0) break; /* not with bytes in the pipe; never spin on it */
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return -errno;
  }
  return 0;
}

int splice_pump(struct pair *p, int k, int reads_max, int *err_side) {
  struct pair_dir *d = &p->dir[k];
  struct pair_pipe *pp = d->pipe;
  struct pair_side *src = &p->side[k];
  int reads = 0;
  while (reads < reads_max && !d->eof) {
    if (pp->len > 0) {
      int err = splice_flush(p, k);
      if (err != 0) {
        *err_side = 1 - k;
        return err;
      }
      /* The writer is full: the source waits (the poll brings it back when the pipe is empty). */
      if (pp->len > 0) return 0;
    }
    /* The pipe is empty here, so EAGAIN can only mean that the socket is. */
    ssize_t n = splice(src->fd, NULL, pp->wr, NULL, SPLICE_READ, SPLICE_FLAGS);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      *err_side = k;
      return -errno;
    }
    reads++;
    if (n == 0) {
      d->eof = 1;
      break;
    }
    src->bytes_read += (uint64_t)n;
    pp->len += (size_t)n;
  }
  /* What the last read brought goes out now rather than on the next event. */
  if (pp->len > 0) {
    int err = splice_flush(p, k);
    if (err != 0) {
      *err_side = 1 - k;
      return err;
    }
  }
  return 0;
}

void splice_close(struct pair *p) {
  for (int k = 0; k < 2; k++) {
    if (p->dir[k].pipe == NULL) continue;
    pipe_free(p->pl, p->dir[k].pipe);
    p->dir[k].pipe = NULL;
  }
}

const char *splice_self_check(void) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, pp[2] = {-1, -1};
  static const char probe[] = "twinport splice self-check";
  char got[sizeof probe];
  const char *why = NULL;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, in) != 0 ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, out) != 0 || pipe2(pp, O_NONBLOCK | O_CLOEXEC) != 0) {
    why = "socketpair or pipe2 failed";
    goto done;
  }
  if (send(in[0], probe, sizeof probe, MSG_NOSIGNAL) != (ssize_t)sizeof probe) {
    why = "send failed";
    goto done;
  }
  if (splice(in[1], NULL, pp[1], NULL, sizeof probe, SPLICE_FLAGS) != (ssize_t)sizeof probe) {
    why = "splice from a socket failed";
    goto done;
  }
  if (splice(pp[0], NULL, out[0], NULL, sizeof probe, SPLICE_FLAGS) != (ssize_t)sizeof probe) {
    why = "splice to a socket failed";
    goto done;
  }
  if (recv(out[1], got, sizeof got, 0) != (ssize_t)sizeof probe || memcmp(got, probe, sizeof probe) != 0) why = "bytes spliced wrong";
done:
  for (int i = 0; i < 2; i++) {
    if (in[i] >= 0) (void)close(in[i]);
    if (out[i] >= 0) (void)close(out[i]);
    if (pp[i] >= 0) (void)close(pp[i]);
  }
  return why;
}
