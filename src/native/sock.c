/* Sockets before they are paired (sock.h): accept, the first reads for the peek, connect. Every state
 * change is one function; JavaScript hears of each event through the loop's sock_event callback, which
 * may close, detach or pair the socket before it returns: code after a callback checks the state. */
#define _GNU_SOURCE
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Connections one readiness of a listening socket may accept before the loop serves others
 * (HAProxy's tune.maxaccept is 64 by default). */
#define ACCEPTS_PER_EVENT 64
/* Out of descriptors: stop accepting for this long. The connections wait in the kernel's backlog
 * instead of being accepted and dropped (libuv's reserve-descriptor trick sheds them unseen). */
#define EMFILE_BACKOFF_MS 100

static struct nsock *sock_new(struct pair_loop *pl, int fd, int state) {
  struct nsock *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->kind = PL_KIND_SOCK;
  s->fd = fd;
  s->state = state;
  s->pl = pl;
  pl_hold(pl);
  return s;
}

static void free_backoff(uv_handle_t *h) { free(h); }

/* Memory goes now, or after the batch being dispatched: an event of that batch may still name it. */
static void sock_gone(struct nsock *s) {
  s->state = SOCK_GONE;
  s->fd = -1;
  if (s->backoff != NULL) {
    uv_close((uv_handle_t *)s->backoff, free_backoff);
    s->backoff = NULL;
  }
  pl_drop(s->pl);
  if (s->pl->dispatching > 0) {
    s->next_dead = s->pl->dead;
    s->pl->dead = s;
  } else {
    free(s);
  }
}

void sock_free_dead(struct pair_loop *pl) {
  while (pl->dead != NULL) {
    struct nsock *s = pl->dead;
    pl->dead = s->next_dead;
    free(s);
  }
}

static int wanted(const struct nsock *s) {
  switch (s->state) {
    case SOCK_LISTEN:
      return s->paused ? 0 : EPOLLIN;
    case SOCK_CONNECTING:
      return EPOLLOUT;
    case SOCK_OPEN:
      return s->reading && !s->eof ? EPOLLIN : 0;
    default:
      return 0;
  }
}

/* As in pair.c: a socket with nothing wanted leaves the set (a hang-up would be reported forever). */
static int watch(struct nsock *s) {
  int ev = wanted(s);
  if (ev == s->events) return 0;
  int op = s->events == 0 ? EPOLL_CTL_ADD : ev == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  struct epoll_event e = {.events = (uint32_t)ev, .data = {.ptr = s}};
  if (epoll_ctl(s->pl->epfd, op, s->fd, &e) != 0) return -errno;
  s->events = ev;
  return 0;
}

static void unwatch(struct nsock *s) {
  if (s->events == 0) return;
  /* Cannot fail for a descriptor in the set; done before close so that a copy held by a forked child
   * does not keep reporting events for memory that is gone. */
  (void)epoll_ctl(s->pl->epfd, EPOLL_CTL_DEL, s->fd, NULL);
  s->events = 0;
}

int sock_listen(struct pair_loop *pl, int fd, uint32_t listener, struct nsock **out) {
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return -errno;
  /* The file description is shared with the caller's descriptor: already non-blocking for libuv. */
  int fl = fcntl(own, F_GETFL);
  if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(own, F_SETFL, fl | O_NONBLOCK) != 0)) {
    int err = -errno;
    (void)close(own);
    return err;
  }
  struct nsock *s = sock_new(pl, own, SOCK_LISTEN);
  if (s == NULL) {
    (void)close(own);
    return -ENOMEM;
  }
  s->listener = listener;
  int err = watch(s);
  if (err != 0) {
    (void)close(own);
    sock_gone(s);
    return err;
  }
  *out = s;
  return 0;
}

int sock_connect(struct pair_loop *pl, const struct sockaddr *to, socklen_t len, struct nsock **out) {
  int fd = socket(to->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as net's noDelay: best effort */
  int rc;
  do rc = connect(fd, to, len);
  while (rc != 0 && errno == EINTR);
  /* EINTR leaves the connect going on; a second connect then says EALREADY/EINPROGRESS. */
  if (rc != 0 && errno != EINPROGRESS && errno != EALREADY) {
    int err = -errno;
    (void)close(fd);
    return err;
  }
  struct nsock *s = sock_new(pl, fd, SOCK_CONNECTING);
  if (s == NULL) {
    (void)close(fd);
    return -ENOMEM;
  }
  /* Even a connect that completed at once is reported from the loop, as libuv does. */
  int err = watch(s);
  if (err != 0) {
    (void)close(fd);
    s->events = 0;
    sock_gone(s);
    return err;
  }
  *out = s;
  return 0;
}

int sock_set_reading(struct nsock *s, int on) {
  if (s->state != SOCK_OPEN) return 0;
  s->reading = on;
  return watch(s);
}

void sock_close(struct nsock *s, int reset) {
  if (s->state == SOCK_GONE) return;
  unwatch(s);
  if (reset) {
    /* SO_LINGER 0: close sends a RST. */
    struct linger lg = {1, 0};
    (void)setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  (void)close(s->fd); /* not retried on EINTR: Linux releases the descriptor whatever it returns */
  sock_gone(s);
}

int sock_detach(struct nsock *s) {
  if (s->state == SOCK_GONE) return -EBADF;
  unwatch(s);
  int fd = s->fd;
  sock_gone(s);
  return fd;
}

void sock_forget(struct nsock *s) {
  if (s->state != SOCK_GONE) sock_gone(s);
}

void sock_unwatched(struct nsock *s) { s->events = 0; }

int sock_name(const struct nsock *s, int local, char *buf, size_t len, int *port) {
  struct sockaddr_in6 sa;
  socklen_t sl = sizeof sa;
  const struct sockaddr_in6 *from = &sa;
  if (s->state == SOCK_GONE) return -EBADF;
  if (!local && s->peer_len > 0) {
    from = &s->peer;
  } else {
    memset(&sa, 0, sizeof sa);
    int rc = local ? getsockname(s->fd, (struct sockaddr *)&sa, &sl) : getpeername(s->fd, (struct sockaddr *)&sa, &sl);
    if (rc != 0) return -errno;
  }
  if (from->sin6_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)from;
    if (inet_ntop(AF_INET, &v4->sin_addr, buf, (socklen_t)len) == NULL) return -errno;
    *port = ntohs(v4->sin_port);
    return 0;
  }
  if (from->sin6_family == AF_INET6) {
    if (inet_ntop(AF_INET6, &from->sin6_addr, buf, (socklen_t)len) == NULL) return -errno;
    *port = ntohs(from->sin6_port);
    return 0;
  }
  return -EAFNOSUPPORT;
}

static void emit(struct nsock *s, int ev, int n, struct nsock *fresh) { s->pl->sock_event(s, ev, n, fresh); }

static void on_backoff(uv_timer_t *t) {
  struct nsock *s = t->data;
  if (s->state != SOCK_LISTEN) return;
  s->paused = 0;
  int err = watch(s);
  if (err != 0) emit(s, SOCK_EV_ACCEPT_FAILED, -err, NULL);
}

/* Out of descriptors (or kernel memory): the listening socket leaves the set for a while. */
static void back_off(struct nsock *s) {
  if (s->backoff == NULL) {
    s->backoff = malloc(sizeof *s->backoff);
    if (s->backoff == NULL || uv_timer_init(s->pl->loop, s->backoff) != 0) {
      free(s->backoff);
      s->backoff = NULL;
      return; /* stays watched: the next readiness tries again */
    }
    s->backoff->data = s;
    uv_unref((uv_handle_t *)s->backoff);
  }
  s->paused = 1;
  (void)watch(s);
  (void)uv_timer_start(s->backoff, on_backoff, EMFILE_BACKOFF_MS, 0);
}

/* An accepted socket's first read happens at once: the client usually sent its first bytes with (or
 * right after) the handshake, so JavaScript gets the connection and its bytes in one call. */
static void on_accept(struct nsock *ls) {
  struct pair_loop *pl = ls->pl;
  for (int i = 0; i < ACCEPTS_PER_EVENT && ls->state == SOCK_LISTEN && !ls->paused; i++) {
    struct sockaddr_in6 peer;
    socklen_t peer_len = sizeof peer;
    int fd = accept4(ls->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue; /* that connection only */
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) back_off(ls);
      emit(ls, SOCK_EV_ACCEPT_FAILED, err, NULL);
      return;
    }
    struct nsock *s = sock_new(pl, fd, SOCK_OPEN);
    if (s == NULL) {
      (void)close(fd);
      emit(ls, SOCK_EV_ACCEPT_FAILED, ENOMEM, NULL);
      return;
    }
    s->listener = ls->listener;
    if (peer_len <= sizeof peer && (peer.sin6_family == AF_INET || peer.sin6_family == AF_INET6)) {
      s->peer = peer;
      s->peer_len = peer_len;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ssize_t n;
    do n = recv(fd, pl->read_buf, pl->read_len, 0);
    while (n < 0 && errno == EINTR);
    int read_err = n < 0 ? errno : 0;
    emit(ls, SOCK_EV_ACCEPT, n > 0 ? (int)n : 0, s);
    if (s->state != SOCK_OPEN) continue; /* closed or taken during the callback */
    if (n == 0) {
      s->eof = 1;
      (void)watch(s);
      emit(s, SOCK_EV_EOF, 0, NULL);
    } else if (n < 0 && read_err != EAGAIN && read_err != EWOULDBLOCK) {
      emit(s, SOCK_EV_ERROR, read_err, NULL);
    }
  }
}

/* One read per readiness: the peek wants a few hundred bytes, and level-triggered epoll comes back. */
static void on_readable(struct nsock *s) {
  ssize_t n;
  do n = recv(s->fd, s->pl->read_buf, s->pl->read_len, 0);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    emit(s, SOCK_EV_READ, (int)n, NULL);
    return;
  }
  if (n == 0) {
    s->eof = 1;
    (void)watch(s);
    emit(s, SOCK_EV_EOF, 0, NULL);
    return;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) return;
  int err = errno;
  s->reading = 0;
  (void)watch(s);
  emit(s, SOCK_EV_ERROR, err, NULL);
}

static void on_connected(struct nsock *s, uint32_t events) {
  int err = 0;
  /* Writable without an error or hang-up is a completed connect (HAProxy trusts it too): the SO_ERROR
   * lookup is only for a failed one. */
  if (events & (EPOLLERR | EPOLLHUP)) {
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  }
  if (err != 0) {
    /* The owner closes it (it may try the next server). */
    s->state = SOCK_OPEN;
    unwatch(s);
    emit(s, SOCK_EV_CONNECT_FAILED, err, NULL);
    return;
  }
  s->state = SOCK_OPEN;
  emit(s, SOCK_EV_CONNECTED, 0, NULL);
  /* Usually paired during the callback (its registration then belongs to the pair); else stop
   * watching for EPOLLOUT, which level-triggered epoll would report on every turn. */
  if (s->state == SOCK_OPEN && watch(s) != 0) {
    s->reading = 0;
    unwatch(s);
  }
}

void sock_on_event(struct nsock *s, uint32_t events) {
  switch (s->state) {
    case SOCK_LISTEN:
      on_accept(s);
      return;
    case SOCK_CONNECTING:
      on_connected(s, events);
      return;
    case SOCK_OPEN:
      if (s->reading && !s->eof) on_readable(s);
      else if (events & (EPOLLHUP | EPOLLERR)) unwatch(s);
      return;
    default:
      return;
  }
}
