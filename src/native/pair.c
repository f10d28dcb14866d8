/* The splice loop of one pair (pair.h): both descriptors in the loop's epoll set, level-triggered, one
 * function per transition. A direction reads into the loop's scratch buffer and writes at once; what the writer does
 * not take is copied into a chunk and the direction stops reading until the chunk is written
 * (backpressure: at most PAIR_CHUNK bytes wait per direction). FIN is passed on per direction after
 * every waiting byte (half-close). A read or write error ends the pair, as it ends a JavaScript splice:
 * the failing side's outcome, and a RST to the other side when the error was the peer going away. */
#define _GNU_SOURCE
#include "pair.h"
#include "sock.h"
#include "splice.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reads one readiness event may do before the loop serves other descriptors. */
#define READS_PER_EVENT 8
/* Events taken from the epoll set per epoll_wait, and batches per turn of Node's loop. */
#define EVENTS_PER_WAIT 64
#define WAITS_PER_TURN 4

static void on_epoll(uv_poll_t *h, int status, int events);
static void on_idle(uv_timer_t *t);
static void fin_seen(struct pair *p, int k);

static void free_handle(uv_handle_t *h) { free(h); }

int pair_loop_init(struct pair_loop *pl, uv_loop_t *loop) {
  memset(pl, 0, sizeof *pl);
  pl->loop = loop;
  pl->epfd = -1;
  pl->scratch = malloc(PAIR_CHUNK);
  pl->spare = malloc(sizeof(char *) * PAIR_SPARE);
  pl->poll = malloc(sizeof *pl->poll);
  int err = -ENOMEM;
  if (pl->scratch == NULL || pl->spare == NULL || pl->poll == NULL) goto fail;
  pl->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (pl->epfd < 0) {
    err = -errno;
    goto fail;
  }
  if ((err = uv_poll_init(loop, pl->poll, pl->epfd)) != 0) goto fail;
  pl->poll->data = pl;
  if ((err = uv_poll_start(pl->poll, UV_READABLE, on_epoll)) != 0) {
    uv_close((uv_handle_t *)pl->poll, free_handle);
    pl->poll = NULL;
    goto fail;
  }
  /* Live pairs keep Node's loop alive (as sockets do); an empty set does not. */
  uv_unref((uv_handle_t *)pl->poll);
  return 0;
fail:
  if (pl->epfd >= 0) (void)close(pl->epfd);
  free(pl->poll);
  free(pl->scratch);
  free(pl->spare);
  memset(pl, 0, sizeof *pl);
  pl->epfd = -1;
  return err;
}

void pair_loop_free(struct pair_loop *pl) {
  /* The poll handle is closed by libuv later (its memory goes in the close callback); it leaves the
   * loop's epoll set now, while epfd is still open. */
  if (pl->poll != NULL) uv_close((uv_handle_t *)pl->poll, free_handle);
  if (pl->epfd >= 0) (void)close(pl->epfd);
  while (pl->nspare > 0) free(pl->spare[--pl->nspare]);
  free(pl->spare);
  free(pl->scratch);
  pl->poll = NULL;
  pl->epfd = -1;
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
  if (d->pipe != NULL && d->pipe->len > 0) {
    int err = splice_flush(p, k);
    if (err != 0 || d->pipe->len > 0) return err;
  }
  if (d->eof && !d->shut) {
    /* The pair's last FIN: the other direction is over (its FIN read from dst and passed on), so the
     * close that ends the pair right after sends this FIN (nothing is left unread on dst: a RST would
     * need unread bytes). One syscall fewer per connection, as HAProxy closes there too. */
    if (p->dir[1 - k].eof && p->dir[1 - k].shut && !dir_pending(&p->dir[1 - k])) {
      d->shut = 1;
      return 0;
    }
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
  if (splice_on(p, k)) {
    int err = splice_pump(p, k, READS_PER_EVENT, err_side);
    if (err != 0) return err;
    /* pump runs only before the direction's FIN: an eof now is this read's, through the pipe. */
    if (d->eof) fin_seen(p, k);
    reads = READS_PER_EVENT;
  }
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
      fin_seen(p, k);
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
    } else if (n == PAIR_CHUNK && splice_bulk(p, k)) {
      /* Bulk: the next reads go through the direction's pipe (the poll brings them). */
      break;
    }
    /* A short read emptied the socket (as far as we can tell): the poll says when more arrives,
     * without a recv that would only answer EAGAIN. */
    if (n < PAIR_CHUNK) break;
  }
  if (d->eof && !dir_pending(d)) {
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
  if (!p->dir[k].eof && !dir_pending(&p->dir[k])) ev |= EPOLLIN;
  if (dir_pending(&p->dir[1 - k]) || (p->dir[1 - k].eof && !p->dir[1 - k].shut)) ev |= EPOLLOUT;
  return ev;
}

/* A side with nothing wanted leaves the set: epoll reports EPOLLHUP / EPOLLERR whatever the mask, and a
 * hung-up side nobody reads would wake the loop forever. Returns 0 or -errno. */
static int watch(struct pair *p, int k) {
  struct pair_side *s = &p->side[k];
  int ev = wanted(p, k);
  if (ev == s->events) return 0;
  int op = s->events == 0 ? EPOLL_CTL_ADD : ev == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  struct epoll_event e = {.events = (uint32_t)ev, .data = {.ptr = s}};
  if (epoll_ctl(p->pl->epfd, op, s->fd, &e) != 0) return -errno;
  s->events = ev;
  return 0;
}

static void unwatch(struct pair *p, int k) {
  struct pair_side *s = &p->side[k];
  if (s->events == 0) return;
  /* It cannot fail for a descriptor in the set; the close that follows removes it in any case unless a
   * forked child still holds it (then this DEL is what keeps its events away). */
  (void)epoll_ctl(p->pl->epfd, EPOLL_CTL_DEL, s->fd, NULL);
  s->events = 0;
}

static void on_handle_closed(uv_handle_t *h) {
  struct pair *p = h->data;
  if (--p->handles_open == 0) pair_release(p);
}

void pl_hold(struct pair_loop *pl) {
  if (pl->held++ == 0) uv_ref((uv_handle_t *)pl->poll);
}

void pl_drop(struct pair_loop *pl) {
  if (--pl->held == 0) uv_unref((uv_handle_t *)pl->poll);
}

static void pairs_less(struct pair_loop *pl) {
  pl->pairs--;
  pl_drop(pl);
}

/* Takes each descriptor out of the epoll set while it is still open, then closes it. close(2) is not
 * retried on EINTR: Linux releases the descriptor whatever it returns. The pair's memory stays until its
 * timer's close callback, after this turn's events: a stale event finds `finished` set. */
static void close_all(struct pair *p, int reset_side) {
  for (int k = 0; k < 2; k++) {
    struct pair_side *s = &p->side[k];
    unwatch(p, k);
    if (k == reset_side) {
      /* SO_LINGER 0: close sends a RST. A unix socket refuses it (EOPNOTSUPP) and is closed plainly. */
      struct linger lg = {1, 0};
      (void)setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    (void)close(s->fd);
    s->fd = -1;
  }
  uv_close((uv_handle_t *)&p->idle, on_handle_closed);
  pend_free(p, &p->dir[0]);
  pend_free(p, &p->dir[1]);
  splice_close(p);
  pairs_less(p->pl);
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

/* EPOLLERR: the socket's error (ECONNRESET for a RST) is in SO_ERROR. */
static int poll_error(int fd, int reported) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) return err;
  return reported;
}

static void on_event(struct pair *p, int k, uint32_t events) {
  if (p->deferred_err != 0) return; /* its timer reports it */
  if (events & EPOLLERR) {
    fail(p, k, poll_error(p->side[k].fd, EIO));
    return;
  }
  int err_side = k;
  int err = 0;
  /* Writable: the bytes waiting for side k (direction 1-k), then FIN if it is due. A hang-up makes the
   * write or the read report it. */
  if ((events & (EPOLLOUT | EPOLLHUP)) && (wanted(p, k) & EPOLLOUT)) err = flush(p, 1 - k);
  if (err == 0 && (events & (EPOLLIN | EPOLLHUP)) && !dir_pending(&p->dir[k]) && !p->dir[k].eof) err = pump(p, k, &err_side);
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

/* The loop's epoll set is readable: serve what is ready, a bounded number of batches per turn. */
static void on_epoll(uv_poll_t *h, int status, int events) {
  struct pair_loop *pl = h->data;
  struct epoll_event ev[EVENTS_PER_WAIT];
  (void)events;
  if (status < 0) {
    /* Not expected of an epoll descriptor; libuv stopped the poll: watch it again. */
    (void)uv_poll_start(pl->poll, UV_READABLE, on_epoll);
    return;
  }
  for (int turn = 0; turn < WAITS_PER_TURN; turn++) {
    int n = epoll_wait(pl->epfd, ev, EVENTS_PER_WAIT, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return; /* EBADF / EINVAL: only if the set were gone, which the loop's poll would not report */
    }
    /* A socket's event may call JavaScript, which may close or pair sockets whose events are later in
     * this batch: their memory stays until the batch is done (sock_free_dead). */
    pl->dispatching++;
    for (int i = 0; i < n; i++) {
      struct pair_side *s = ev[i].data.ptr;
      if (s->kind == PL_KIND_SOCK) {
        sock_on_event((struct nsock *)(void *)s, ev[i].events);
        continue;
      }
      struct pair *p = s->pair;
      if (p->finished) continue;
      on_event(p, s == &p->side[SIDE_SERVER] ? SIDE_SERVER : SIDE_CLIENT, ev[i].events);
    }
    pl->dispatching--;
    if (pl->batch_end != NULL) pl->batch_end(pl);
    sock_free_dead(pl);
    if (n < EVENTS_PER_WAIT) return;
  }
}

/* How finely the last activity is dated: the timer wakes every idle/8 while bytes flow, so a pair
 * closes between `idle` and `idle + idle/8` after its last byte (as the JavaScript splice does), and
 * the data path pays nothing per read for idle tracking. */
#define IDLE_CHECKS 8

static uint64_t idle_step(const struct pair *p) {
  uint64_t step = (p->idle_ms + IDLE_CHECKS - 1) / IDLE_CHECKS;
  return step > 0 ? step : 1;
}

/* The pair's one timer serves the idle checks and the FIN bound: it wakes at whichever is due first.
 * UINT64_MAX: no idle check due (only the FIN bound, if armed). */
static void arm_idle(struct pair *p, uint64_t ms) {
  if (p->fin_at != 0) {
    uint64_t now = uv_now(p->pl->loop);
    uint64_t left = p->fin_at > now ? p->fin_at - now : 0;
    if (left < ms) ms = left;
  }
  if (ms == UINT64_MAX) return;
  /* uv_timer_start fails only for a closing handle or no callback: neither can happen here. */
  (void)uv_timer_start(&p->idle, on_idle, ms, 0);
}

/* Side k's FIN was read. The first FIN whose side has a bound arms it, once (the JavaScript splice's
 * armFinTimer): later bytes and the other side's FIN do not move it. Per FIN, never per read. */
static void fin_seen(struct pair *p, int k) {
  uint64_t ms = p->dir[k].fin_ms;
  if (ms == 0 || p->fin_at != 0) return;
  p->fin_side = k;
  p->fin_at = uv_now(p->pl->loop) + ms;
  /* A deferred failure's timer is due at once and ends the pair first; an idle check due sooner
   * re-arms for the bound itself (arm_idle). */
  if (p->deferred_err != 0) return;
  if (uv_is_active((uv_handle_t *)&p->idle) && uv_timer_get_due_in(&p->idle) <= ms) return;
  (void)uv_timer_start(&p->idle, on_idle, ms, 0);
}

static void on_idle(uv_timer_t *t) {
  struct pair *p = t->data;
  if (p->finished) return;
  if (p->deferred_err != 0) {
    fail(p, p->deferred_side, p->deferred_err);
    return;
  }
  uint64_t now = uv_now(p->pl->loop);
  if (p->fin_at != 0 && now >= p->fin_at) {
    finish(p, p->fin_side == SIDE_CLIENT ? PAIR_CLIENT_FIN_TIMEOUT : PAIR_SERVER_FIN_TIMEOUT, 0, -1);
    return;
  }
  if (p->idle_ms == 0) {
    arm_idle(p, UINT64_MAX);
    return;
  }
  uint64_t bytes = p->side[0].bytes_read + p->side[1].bytes_read;
  if (bytes != p->idle_seen) {
    p->idle_seen = bytes;
    p->last_active = now;
    arm_idle(p, idle_step(p));
    return;
  }
  uint64_t quiet = now - p->last_active;
  if (quiet + 1 >= p->idle_ms) {
    finish(p, PAIR_IDLE_TIMEOUT, 0, -1);
    return;
  }
  uint64_t rest = p->idle_ms - quiet;
  arm_idle(p, rest < idle_step(p) ? rest : idle_step(p));
}

static int start(struct pair_loop *pl, struct pair *p, int client_fd, int client_in_set, int server_fd, int server_in_set,
                 const char *initial, size_t initial_len, int client_eof, int server_eof, uint64_t idle_ms, pair_done_cb done) {
  void *data = p->data;
  memset(p, 0, sizeof *p);
  p->data = data;
  p->pl = pl;
  p->done = done;
  p->idle_ms = idle_ms;
  for (int k = 0; k < 2; k++) p->side[k].pair = p;
  p->side[SIDE_CLIENT].fd = client_fd;
  p->side[SIDE_SERVER].fd = server_fd;
  /* -1: registered under a socket's data; the first watch() is a MOD that points it at the side. */
  p->side[SIDE_CLIENT].events = client_in_set ? -1 : 0;
  p->side[SIDE_SERVER].events = server_in_set ? -1 : 0;
  p->dir[SIDE_CLIENT].eof = client_eof;
  p->dir[SIDE_SERVER].eof = server_eof;
  splice_init(p);
  if (initial_len > 0) {
    char *copy = malloc(initial_len);
    if (copy == NULL) return -ENOMEM;
    memcpy(copy, initial, initial_len);
    p->dir[SIDE_CLIENT].pend = copy;
    p->dir[SIDE_CLIENT].pend_len = initial_len;
  }
  int err = uv_timer_init(pl->loop, &p->idle);
  if (err != 0) {
    pend_free(p, &p->dir[SIDE_CLIENT]);
    return err;
  }
  p->idle.data = p;
  p->handles_open = 1;
  /* The server just accepted the connection: its first bytes (and a FIN already read) go out now, before
   * the sides are registered, so that each registration is made once with its final mask (an adopted
   * socket's is one MOD). A failure after a byte went out is the pair's, reported from the loop by the
   * timer; before that, the caller gets it and splices the pair itself. */
  int sent = 0;
  if (p->dir[SIDE_CLIENT].pend != NULL || client_eof) {
    if ((err = flush(p, SIDE_CLIENT)) != 0) {
      p->deferred_side = SIDE_SERVER;
      p->deferred_err = -err;
    }
    sent = 1;
  }
  if (p->deferred_err == 0 && ((err = watch(p, SIDE_CLIENT)) != 0 || (err = watch(p, SIDE_SERVER)) != 0)) {
    if (!sent || (p->side[SIDE_SERVER].bytes_written == 0 && !p->dir[SIDE_CLIENT].shut)) {
      unwatch(p, SIDE_CLIENT);
      unwatch(p, SIDE_SERVER);
      p->finished = 1;
      uv_close((uv_handle_t *)&p->idle, on_handle_closed);
      pend_free(p, &p->dir[SIDE_CLIENT]);
      return err;
    }
    p->deferred_side = SIDE_CLIENT;
    p->deferred_err = -err;
  }
  pl->pairs++;
  pl_hold(pl);
  if (p->deferred_err != 0) {
    (void)uv_timer_start(&p->idle, on_idle, 0, 0);
    return 0;
  }
  if (idle_ms > 0) {
    p->last_active = uv_now(pl->loop);
    arm_idle(p, idle_step(p));
  }
  return 0;
}

int pair_start(struct pair_loop *pl, struct pair *p, int client_fd, int server_fd, const char *initial,
               size_t initial_len, int client_eof, int server_eof, uint64_t idle_ms, pair_done_cb done) {
  return start(pl, p, client_fd, 0, server_fd, 0, initial, initial_len, client_eof, server_eof, idle_ms, done);
}

int pair_adopt(struct pair_loop *pl, struct pair *p, int client_fd, int client_in_set, int server_fd, int server_in_set,
               const char *initial, size_t initial_len, int client_eof, int server_eof, uint64_t idle_ms, pair_done_cb done) {
  return start(pl, p, client_fd, client_in_set, server_fd, server_in_set, initial, initial_len, client_eof, server_eof,
               idle_ms, done);
}

/* 0: no bound (the dir's fin_ms). Node's setTimeout runs a 0 ms timer after 1 ms. */
static uint32_t fin_bound(uint64_t ms) {
  if (ms == PAIR_FIN_NONE) return 0;
  if (ms == 0) return 1;
  return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

void pair_set_fin(struct pair *p, uint64_t client_fin_ms, uint64_t server_fin_ms) {
  p->dir[SIDE_CLIENT].fin_ms = fin_bound(client_fin_ms);
  p->dir[SIDE_SERVER].fin_ms = fin_bound(server_fin_ms);
  if (p->finished) return;
  /* A FIN read before the hand-over: the JavaScript splice arms the client's at the splice too. */
  for (int k = 0; k < 2; k++)
    if (p->dir[k].eof) fin_seen(p, k);
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
