/* Native sockets before they are paired (stage 2 of the engine, docs/native.md): listening sockets the
 * addon accepts on, accepted client sockets whose first bytes are read for JavaScript's peek, and server
 * sockets being connected. They live in the same epoll set as the pairs (pair.h), so handing a pair over
 * is one epoll_ctl MOD per side: no descriptor is duplicated, no libuv handle is made or closed.
 * JavaScript sees one callback per event (sock_cb), never a handle object. */
#ifndef TWINPORT_SOCK_H
#define TWINPORT_SOCK_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "pair.h"

enum sock_state {
  SOCK_LISTEN = 1,
  SOCK_OPEN = 2,       /* connected: an accepted client, or a server whose connect completed */
  SOCK_CONNECTING = 3,
  SOCK_GONE = 4,       /* closed, detached or adopted by a pair: memory waits for the batch's end */
};

enum sock_event {
  SOCK_EV_ACCEPT = 0,         /* on the new socket; n: bytes already read into the read buffer */
  SOCK_EV_READ = 1,           /* n bytes in the read buffer */
  SOCK_EV_EOF = 2,
  SOCK_EV_ERROR = 3,          /* n: errno of the failed read */
  SOCK_EV_CONNECTED = 4,
  SOCK_EV_CONNECT_FAILED = 5, /* n: errno */
  SOCK_EV_ACCEPT_FAILED = 6,  /* on the listening socket; n: errno */
};

struct nsock {
  int kind;            /* PL_KIND_SOCK; first, as in pair_side: the epoll data tells them apart */
  int fd;
  int events;          /* registered in the loop's epoll set now (0: not in it) */
  int state;
  int reading;         /* SOCK_OPEN: JavaScript wants its bytes */
  int eof;             /* SOCK_OPEN: FIN read */
  int paused;          /* SOCK_LISTEN: out of descriptors; accepting again when `backoff` fires */
  uint32_t id;         /* the owner's slot (addon.c) */
  uint32_t listener;   /* SOCK_LISTEN: JavaScript's id; an accepted socket: its listener's */
  struct pair_loop *pl;
  uv_timer_t *backoff; /* SOCK_LISTEN only */
  struct nsock *next_dead;
  socklen_t peer_len;
  struct sockaddr_in6 peer; /* from accept4: IPv4 fits too */
};

/* Events go to the owner (addon.c), which calls JavaScript. `fresh` is the new socket of an ACCEPT. */
typedef void (*sock_cb)(struct nsock *s, int ev, int n, struct nsock *fresh);

/* The listening descriptor is duplicated (the caller closes its own); returns 0 or -errno. */
int sock_listen(struct pair_loop *pl, int fd, uint32_t listener, struct nsock **out);
/* A non-blocking connect; CONNECTED or CONNECT_FAILED comes from the loop, never from this call.
 * Returns 0 or -errno (nothing to clean up then). */
int sock_connect(struct pair_loop *pl, const struct sockaddr *to, socklen_t len, struct nsock **out);
/* JavaScript wants reads (SOCK_OPEN) or not; 0 or -errno. */
int sock_set_reading(struct nsock *s, int on);
/* Closes the descriptor (with a RST when `reset`, TCP only). No event follows. */
void sock_close(struct nsock *s, int reset);
/* Leaves the epoll set and gives the descriptor to the caller. */
int sock_detach(struct nsock *s);
/* After pair_adopt took the socket's descriptor (and its epoll registration): the socket is gone. */
void sock_forget(struct nsock *s);
/* After pair_adopt failed: the descriptor is out of the epoll set (the socket is kept, not watched). */
void sock_unwatched(struct nsock *s);
/* "address" into buf and the port; 0 or -errno. `local`: getsockname, else the peer from accept4 (or
 * getpeername for a connected server socket). */
int sock_name(const struct nsock *s, int local, char *buf, size_t len, int *port);

/* Called by the loop's epoll dispatch (pair.c) for an event whose data is an nsock. */
void sock_on_event(struct nsock *s, uint32_t events);
/* Frees the sockets that went away during a dispatch batch (their stale events are skipped first). */
void sock_free_dead(struct pair_loop *pl);

#endif
