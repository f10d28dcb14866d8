/* The splice loop of one pair (pair.h): level-triggered uv_poll on both descriptors, one function per
 * transition. A direction reads into the loop's scratch buffer and writes at once; what the writer does
 * not take is copied into a chunk and the direction stops reading until the chunk is written
 * (backpressure: at most PAIR_CHUNK bytes wait per direction). FIN is passed on per direction after
 * every waiting byte (half-close). A read or write error ends the pair, as it ends a JavaScript splice:
 * the failing side's outcome, and a RST to the other side when the error was the peer going away. */
#define _GNU_SOURCE
#include "pair.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reads one readiness event may do before the loop serves other descriptors. */
#define READS_PER_EVENT 8

static void on_poll(uv_poll_t *h, int status, int events);
static void on_idle(uv_timer_t *t);

int pair_loop_init(struct pair_loop *pl, uv_loop_t *loop) {
  pl->loop = loop;
  pl->nspare = 0;
  pl->scratch = malloc(PAIR_CHUNK);
  pl->spare = malloc(sizeof(char *) * PAIR_SPARE);
  if (pl->scratch == NULL || pl->spare == NULL) {
    free(pl->scratch);
    free(pl->spare);
    pl->scratch = NULL;
    pl->spare = NULL;
    return -ENOMEM;
  }
  return 0;
}

void pair_loop_free(struct pair_loop *pl) {
  while (pl->nspare > 0) free(pl->spare[--pl->nspare]);
  free(pl->spare);
  free(pl->scratch);
  pl->spare = NULL;
  pl->scratch = NULL;
}

static char *chunk_take(struct pair_loop *pl) {
  if (pl->nspare > 0) return pl->spare[--pl->nspare];
  return malloc(PAIR_CHUNK);
}

static void chunk_give(struct pair_loop *pl, char *c) {
  if (pl->nspare < PAIR_SPARE)
    pl->spare[pl->nspare++] = c;
  else
    free(c);
}

static void pend_free(struct pair *p, struct pair_dir *d) {
  if (d->pend == NULL) return;
  if (d->pend_chunk)
    chunk_give(p->pl, d->pend);
  else
    free(d->pend);
  d->pend = NULL;
  d->pend_off = 0;
  d->pend_len = 0;
  d->pend_chunk = 0;
}

/* The peer went away abruptly (the JavaScript splice's isReset): the other side gets a RST too. */
static int is_reset(int err) {
  return err == ECONNRESET || err == EPIPE || err == ECONNABORTED || err == ETIMEDOUT;
}

/* Writes as much of buf as the socket takes now: the count (maybe short), or -errno. */
static ssize_t send_some(int fd, const char *buf, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += (size_t)n;
      continue;
    }
    if (n == 0) break; /* not for a stream socket with len > 0; never spin on it */
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return -errno;
  }
  return (ssize_t)off;
}

/* Direction k's waiting bytes, then its FIN once nothing waits. Errors belong to side 1-k. */
static int flush(struct pair *p, int k) {
  struct pair_dir *d = &p->dir[k];
  struct pair_side *dst = &p->side[1 - k];
  if (d->pend != NULL) {
    ssize_t n = send_some(dst->fd, d->pend + d->pend_off, d->pend_len - d->pend_off);
    if (n < 0) return (int)n;
    dst->bytes_written += (uint64_t)n;
    d->pend_off += (size_t)n;
    if (d->pend_off < d->pend_len) return 0;
    pend_free(p, d);
  }
  if (d->eof && !d->shut) {
    /* ENOTCONN: the peer is gone already; as net.Socket does, the FIN counts as sent. */
    if (shutdown(dst->fd, SHUT_WR) != 0 && errno != ENOTCONN) return -errno;
    d->shut = 1;
  }
  return 0;
}

/* Reads from side k and writes to the other until the reader is empty, the writer is full, FIN, or
 * READS_PER_EVENT reads. Returns 0 or -errno with *err_side set. */
static int pump(struct pair *p, int k, int *err_side) {
  struct pair_loop *pl = p->pl;
  struct pair_dir *d = &p->dir[k];
  struct pair_side *src = &p->side[k];
  struct pair_side *dst = &p->side[1 - k];
  int reads = 0;
  while (reads < READS_PER_EVENT && !d->eof && d->pend == NULL) {
    ssize_t n = recv(src->fd, pl->scratch, PAIR_CHUNK, 0);
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
    ssize_t w = send_some(dst->fd, pl->scratch, (size_t)n);
    if (w < 0) {
      *err_side = 1 - k;
      return (int)w;
    }
    dst->bytes_written += (uint64_t)w;
    if (w < n) {
      char *c = chunk_take(pl);
      if (c == NULL) {
        *err_side = k;
        return -ENOMEM;
      }
      memcpy(c, pl->scratch + w, (size_t)(n - w));
      d->pend = c;
      d->pend_chunk = 1;
      d->pend_off = 0;
      d->pend_len = (size_t)(n - w);
    }
    /* A short read emptied the socket (as far as we can tell): the poll says when more arrives,
     * without a recv that would only answer EAGAIN. */
    if (n < PAIR_CHUNK) break;
  }
  if (d->eof && d->pend == NULL) {
    int err = flush(p, k);
    if (err != 0) {
      *err_side = 1 - k;
      return err;
    }
  }
  return 0;
}

static int wanted(const struct pair *p, int k) {
  int ev = 0;
  if (!p->dir[k].eof && p->dir[k].pend == NULL) ev |= UV_READABLE;
  if (p->dir[1 - k].pend != NULL || (p->dir[1 - k].eof && !p->dir[1 - k].shut)) ev |= UV_WRITABLE;
  return ev;
}

static int watch(struct pair *p, int k) {
  struct pair_side *s = &p->side[k];
  int ev = wanted(p, k);
  if (ev == s->events) return 0;
  int err = ev != 0 ? uv_poll_start(&s->poll, ev, on_poll) : uv_poll_stop(&s->poll);
  if (err != 0) return err;
  s->events = ev;
  return 0;
}

static void on_handle_closed(uv_handle_t *h) {
  struct pair *p = h->data;
  if (--p->handles_open == 0) pair_release(p);
}

/* Stops both polls (libuv drops the descriptor from epoll while it is still open), then closes it.
 * close(2) is not retried on EINTR: Linux releases the descriptor whatever it returns. */
static void close_all(struct pair *p, int reset_side) {
  for (int k = 0; k < 2; k++) {
    struct pair_side *s = &p->side[k];
    if (k == reset_side) {
      /* SO_LINGER 0: close sends a RST. A unix socket refuses it (EOPNOTSUPP) and is closed plainly. */
      struct linger lg = {1, 0};
      (void)setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    (void)close(s->fd);
    s->fd = -1;
  }
  uv_close((uv_handle_t *)&p->idle, on_handle_closed);
  pend_free(p, &p->dir[0]);
  pend_free(p, &p->dir[1]);
}

static void finish(struct pair *p, enum pair_reason reason, int err, int reset_side) {
  p->finished = 1;
  close_all(p, reset_side);
  p->done(p, reason, err);
}

static void fail(struct pair *p, int side, int err) {
  enum pair_reason reason = side == SIDE_CLIENT ? PAIR_CLIENT_RESET : PAIR_SERVER_RESET;
  finish(p, reason, err, is_reset(err) ? 1 - side : -1);
}

/* libuv answers EPOLLERR with UV_EBADF (and stops the poll) whatever the socket's error is: the real
 * one (ECONNRESET for a RST) is in SO_ERROR. */
static int poll_error(int fd, int reported) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) return err;
  return reported;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  struct pair *p = h->data;
  int k = h == &p->side[SIDE_SERVER].poll ? SIDE_SERVER : SIDE_CLIENT;
  if (p->finished) return;
  if (status < 0) {
    fail(p, k, poll_error(p->side[k].fd, -status));
    return;
  }
  int err_side = k;
  int err = 0;
  /* Writable: the bytes waiting for side k (direction 1-k), then FIN if it is due. */
  if ((events & UV_WRITABLE) && (wanted(p, k) & UV_WRITABLE)) err = flush(p, 1 - k);
  if (err == 0 && (events & UV_READABLE) && p->dir[k].pend == NULL && !p->dir[k].eof) err = pump(p, k, &err_side);
  if (err != 0) {
    fail(p, err_side, -err);
    return;
  }
  if (p->dir[0].shut && p->dir[1].shut) {
    finish(p, PAIR_DONE, 0, -1);
    return;
  }
  if ((err = watch(p, 0)) != 0 || (err = watch(p, 1)) != 0) fail(p, k, -err);
}

static void arm_idle(struct pair *p) {
  p->idle_seen = p->side[0].bytes_read + p->side[1].bytes_read;
  /* uv_timer_start fails only for a closing handle or no callback: neither can happen here. */
  (void)uv_timer_start(&p->idle, on_idle, p->idle_ms, 0);
}

/* Compares byte counts only when it fires: the data path pays nothing per read for idle tracking. */
static void on_idle(uv_timer_t *t) {
  struct pair *p = t->data;
  if (p->finished) return;
  if (p->side[0].bytes_read + p->side[1].bytes_read == p->idle_seen) {
    finish(p, PAIR_IDLE_TIMEOUT, 0, -1);
    return;
  }
  arm_idle(p);
}

int pair_start(struct pair_loop *pl, struct pair *p, int client_fd, int server_fd, const char *initial,
               size_t initial_len, int client_eof, int server_eof, uint64_t idle_ms, pair_done_cb done) {
  void *data = p->data;
  memset(p, 0, sizeof *p);
  p->data = data;
  p->pl = pl;
  p->done = done;
  p->idle_ms = idle_ms;
  p->side[SIDE_CLIENT].fd = client_fd;
  p->side[SIDE_SERVER].fd = server_fd;
  p->dir[SIDE_CLIENT].eof = client_eof;
  p->dir[SIDE_SERVER].eof = server_eof;
  if (initial_len > 0) {
    char *copy = malloc(initial_len);
    if (copy == NULL) return -ENOMEM;
    memcpy(copy, initial, initial_len);
    p->dir[SIDE_CLIENT].pend = copy;
    p->dir[SIDE_CLIENT].pend_len = initial_len;
  }
  int err = uv_poll_init(pl->loop, &p->side[SIDE_CLIENT].poll, client_fd);
  if (err != 0) {
    pend_free(p, &p->dir[SIDE_CLIENT]);
    return err;
  }
  p->side[SIDE_CLIENT].poll.data = p;
  p->handles_open = 1;
  err = uv_poll_init(pl->loop, &p->side[SIDE_SERVER].poll, server_fd);
  if (err == 0) {
    p->side[SIDE_SERVER].poll.data = p;
    p->handles_open++;
    err = uv_timer_init(pl->loop, &p->idle);
    if (err == 0) {
      p->idle.data = p;
      p->handles_open++;
      if ((err = watch(p, SIDE_CLIENT)) == 0) err = watch(p, SIDE_SERVER);
      if (err == 0) {
        if (idle_ms > 0) arm_idle(p);
        return 0;
      }
      uv_close((uv_handle_t *)&p->idle, on_handle_closed);
    }
    uv_close((uv_handle_t *)&p->side[SIDE_SERVER].poll, on_handle_closed);
  }
  /* The descriptors stay the caller's; the pair is released once its handles are closed. */
  p->finished = 1;
  uv_close((uv_handle_t *)&p->side[SIDE_CLIENT].poll, on_handle_closed);
  pend_free(p, &p->dir[SIDE_CLIENT]);
  return err;
}

void pair_close(struct pair *p) {
  if (p->finished) return;
  p->finished = 1;
  close_all(p, -1);
}

int pair_pump_once(struct pair_loop *pl, struct pair *p, int from) {
  p->pl = pl;
  int err_side = from;
  return pump(p, from, &err_side);
}
