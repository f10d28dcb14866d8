/* The node-api face of the splice engine (docs/native.md). JavaScript calls:
 *   init(onDone, counts)  onDone(slot, reason, errno) when a pair ends by itself; counts: a Float64Array(4)
 *                         that holds [client read, client written, server read, server written] of the
 *                         pair just ended (by onDone or close)
 *   start(clientFd, serverFd, initial, clientEof, serverEof, idleMs[, clientFinMs, serverFinMs])
 *                         → slot ≥ 0, or -errno; the descriptors are duplicated: the caller closes its own
 *                         afterwards. A FIN bound left out or undefined: none (timeouts.client_fin / server_fin)
 *   close(slot) → true when the slot was live (counts filled), false otherwise
 *   counts(slot) → the same, for a pair that goes on (the admin API's live byte counts)
 *   selfCheck() → null, or what failed
 *   live() → pairs running
 *   splice(mode) → null, or why splice(2) cannot be used here (the mode is then off)
 *                         0 off, 1 auto, 2 always (splice.h), for pairs started from now on
 *   spliceStats() → [pipes open, pipes opened since start, bytes spliced since start]
 * Slots are small integers reused after a pair ends, so JavaScript can index an array with them.
 *
 * Stage 2, sockets before they are paired (sock.h; docs/native.md):
 *   sockInit(onSock, readBuffer)  onSock(event, slot, n, listener) for every socket event (sock.h's
 *                         enum sock_event); reads land in readBuffer (JavaScript's own Buffer)
 *   listen(fd, listener) → socket slot, or -errno: accepts on a duplicate of fd from now on
 *   connect(address, port, ipv6) → socket slot, or -errno; CONNECTED / CONNECT_FAILED follow
 *   sockRead(slot, on) → 0 or -errno;  sockClose(slot, reset);  sockDetach(slot) → fd (now the caller's)
 *   sockName(slot, local) → [address, port], or -errno;  sockFd(slot) → fd
 *   adopt(clientSlot, serverSlot, initial, clientEof, serverEof, idleMs[, clientFinMs, serverFinMs])
 *                         → pair slot, or -errno: as start, without duplicating; both socket slots are
 *                         gone on success
 * Socket slots are numbered apart from pair slots. */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <stddef.h>

#include "pair.h"
#include "sock.h"
#include "splice.h"

struct slot_pair {
  struct pair pair;    /* first: pair_release gets this pointer back */
  struct addon *addon;
  uint32_t slot;
};

struct addon {
  napi_env env;
  struct pair_loop pl;
  int pl_ready;
  napi_ref on_done;
  napi_ref counts_ref;
  double *counts;
  napi_async_context async;
  napi_ref resource;
  /* Open while a batch of epoll events calls JavaScript (see call_js). */
  int in_batch;
  napi_handle_scope batch_handles;
  napi_callback_scope batch_scope;
  struct slot_pair **slots;
  uint32_t nslots;   /* slots handed out so far (live or free) */
  uint32_t cap;
  uint32_t *free_slots;
  uint32_t nfree;
  uint32_t live;
  /* Stage 2: sockets not yet paired, by slot. */
  napi_ref on_sock;
  napi_ref read_buf_ref;
  struct nsock **socks;
  uint32_t nsocks;   /* socket slots handed out so far (live or free) */
  uint32_t sock_cap;
  uint32_t *free_socks;
  uint32_t nfree_socks;
  uint32_t live_socks;
};

#define CHECK(call)                                     \
  do {                                                  \
    if ((call) != napi_ok) return throw_last(env, #call); \
  } while (0)

static napi_value throw_last(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  const char *msg = what;
  if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL && info->error_message != NULL) msg = info->error_message;
  napi_throw_error(env, "TWP_ERR_NATIVE", msg);
  return NULL;
}

void pair_release(struct pair *p) { free((struct slot_pair *)p); }

static void fill_counts(struct addon *a, const struct pair *p) {
  a->counts[0] = (double)p->side[SIDE_CLIENT].bytes_read;
  a->counts[1] = (double)p->side[SIDE_CLIENT].bytes_written;
  a->counts[2] = (double)p->side[SIDE_SERVER].bytes_read;
  a->counts[3] = (double)p->side[SIDE_SERVER].bytes_written;
}

static void free_slot(struct addon *a, struct slot_pair *sp) {
  a->slots[sp->slot] = NULL;
  a->free_slots[a->nfree++] = sp->slot;
  a->live--;
}

/* Grows both arrays together: a free list never holds more than nslots entries. */
static int take_slot(struct addon *a, uint32_t *out) {
  if (a->nfree > 0) {
    *out = a->free_slots[--a->nfree];
    return 0;
  }
  if (a->nslots == a->cap) {
    uint32_t cap = a->cap == 0 ? 256 : a->cap * 2;
    struct slot_pair **slots = realloc(a->slots, sizeof *slots * cap);
    if (slots == NULL) return -ENOMEM;
    a->slots = slots;
    uint32_t *free_slots = realloc(a->free_slots, sizeof *free_slots * cap);
    if (free_slots == NULL) return -ENOMEM;
    a->free_slots = free_slots;
    a->cap = cap;
  }
  *out = a->nslots++;
  return 0;
}

/* JavaScript is called from the event loop in one of two ways. Inside a batch of epoll events every call
 * shares one handle scope and one callback scope, opened at the batch's first call and closed by
 * on_batch_end: Node's tick queue and microtasks run once per batch instead of once per event (what a
 * napi_make_callback per event costs). Outside a batch (a timer's callback), each call is a
 * napi_make_callback in a handle scope of its own. */
struct js_call {
  int batch;
  napi_handle_scope scope;
};

static int js_begin(struct addon *a, struct js_call *c) {
  napi_env env = a->env;
  c->batch = 0;
  if (a->pl.dispatching > 0 && a->resource != NULL) {
    if (a->in_batch) {
      c->batch = 1;
      return 1;
    }
    napi_value resource;
    if (napi_open_handle_scope(env, &a->batch_handles) != napi_ok) return 0;
    if (napi_get_reference_value(env, a->resource, &resource) == napi_ok &&
        napi_open_callback_scope(env, resource, a->async, &a->batch_scope) == napi_ok) {
      a->in_batch = 1;
      c->batch = 1;
      return 1;
    }
    napi_close_handle_scope(env, a->batch_handles);
  }
  return napi_open_handle_scope(env, &c->scope) == napi_ok;
}

/* Calls fn(argv); a throw left by the handler (which catches its own) is an uncaught exception. */
static void js_call_fn(struct addon *a, const struct js_call *c, napi_ref fn_ref, size_t argc, const napi_value *argv) {
  napi_env env = a->env;
  napi_value fn, recv, result;
  if (napi_get_reference_value(env, fn_ref, &fn) != napi_ok || fn == NULL || napi_get_global(env, &recv) != napi_ok) return;
  napi_status st = c->batch ? napi_call_function(env, recv, fn, argc, argv, &result)
                            : napi_make_callback(env, a->async, recv, fn, argc, argv, &result);
  if (st != napi_ok) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok && exc != NULL) napi_fatal_exception(env, exc);
  }
}

static void js_end(struct addon *a, const struct js_call *c) {
  if (!c->batch) napi_close_handle_scope(a->env, c->scope);
}

static void on_batch_end(struct pair_loop *pl) {
  struct addon *a = (struct addon *)(void *)((char *)pl - offsetof(struct addon, pl));
  if (!a->in_batch) return;
  a->in_batch = 0;
  /* Runs the ticks and microtasks the batch's calls queued. */
  (void)napi_close_callback_scope(a->env, a->batch_scope);
  (void)napi_close_handle_scope(a->env, a->batch_handles);
}

static void on_pair_done(struct pair *p, enum pair_reason reason, int err) {
  struct slot_pair *sp = (struct slot_pair *)p;
  struct addon *a = sp->addon;
  napi_env env = a->env;
  uint32_t slot = sp->slot;
  fill_counts(a, p);
  free_slot(a, sp);
  struct js_call c;
  if (!js_begin(a, &c)) return;
  napi_value argv[3];
  if (napi_create_uint32(env, slot, &argv[0]) == napi_ok && napi_create_int32(env, (int32_t)reason, &argv[1]) == napi_ok &&
      napi_create_int32(env, err, &argv[2]) == napi_ok)
    js_call_fn(a, &c, a->on_done, 3, argv);
  js_end(a, &c);
}

static struct addon *addon_of(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return data;
}

static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct addon *a = addon_of(env);
  if (a == NULL || argc < 2) return throw_last(env, "init(onDone, counts)");
  napi_typedarray_type type;
  size_t length;
  void *data;
  CHECK(napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL));
  if (type != napi_float64_array || length < 4) {
    napi_throw_type_error(env, "TWP_ERR_NATIVE", "counts must be a Float64Array(4)");
    return NULL;
  }
  if (a->on_done != NULL) CHECK(napi_delete_reference(env, a->on_done));
  if (a->counts_ref != NULL) CHECK(napi_delete_reference(env, a->counts_ref));
  a->on_done = a->counts_ref = NULL;
  CHECK(napi_create_reference(env, argv[0], 1, &a->on_done));
  CHECK(napi_create_reference(env, argv[1], 1, &a->counts_ref));
  a->counts = data;
  if (a->async == NULL) {
    napi_value resource, name;
    CHECK(napi_create_object(env, &resource));
    CHECK(napi_create_string_utf8(env, "twinport:splice", NAPI_AUTO_LENGTH, &name));
    CHECK(napi_async_init(env, resource, name, &a->async));
    CHECK(napi_create_reference(env, resource, 1, &a->resource));
    a->pl.batch_end = on_batch_end;
  }
  return NULL;
}

static napi_value int_value(napi_env env, int32_t v) {
  napi_value out;
  CHECK(napi_create_int32(env, v, &out));
  return out;
}

/* An optional bound in ms: PAIR_FIN_NONE when undefined (or left out: node-api passes undefined), -1 when
 * it is not a number ≥ 0. */
static int fin_arg(napi_env env, napi_value v, uint64_t *out) {
  napi_valuetype t;
  double ms;
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t == napi_undefined) {
    *out = PAIR_FIN_NONE;
    return 0;
  }
  if (t != napi_number || napi_get_value_double(env, v, &ms) != napi_ok || !(ms >= 0)) return -1;
  /* pair_set_fin holds what it cannot keep; a double past 2^64 would be UB to convert. */
  *out = ms >= 1e18 ? (uint64_t)1e18 : (uint64_t)ms;
  return 0;
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct addon *a = addon_of(env);
  if (a == NULL || argc < 6 || a->counts == NULL || !a->pl_ready) return throw_last(env, "start: call init first");
  int32_t cfd, sfd;
  bool ceof, seof;
  double idle;
  CHECK(napi_get_value_int32(env, argv[0], &cfd));
  CHECK(napi_get_value_int32(env, argv[1], &sfd));
  CHECK(napi_get_value_bool(env, argv[3], &ceof));
  CHECK(napi_get_value_bool(env, argv[4], &seof));
  CHECK(napi_get_value_double(env, argv[5], &idle));
  const char *initial = NULL;
  size_t initial_len = 0;
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[2], &t));
  if (t != napi_undefined && t != napi_null) {
    void *d;
    CHECK(napi_get_buffer_info(env, argv[2], &d, &initial_len));
    initial = d;
  }
  if (cfd < 0 || sfd < 0 || !(idle >= 0)) return int_value(env, -EBADF);
  uint64_t client_fin, server_fin;
  if (fin_arg(env, argv[6], &client_fin) != 0 || fin_arg(env, argv[7], &server_fin) != 0) return int_value(env, -EINVAL);

  uint32_t slot;
  int err = take_slot(a, &slot);
  if (err != 0) return int_value(env, err);
  struct slot_pair *sp = malloc(sizeof *sp);
  if (sp == NULL) {
    a->free_slots[a->nfree++] = slot;
    return int_value(env, -ENOMEM);
  }
  /* Own copies: the caller closes its handles (and their descriptors) right after. */
  int c = fcntl(cfd, F_DUPFD_CLOEXEC, 0);
  int s = c < 0 ? -1 : fcntl(sfd, F_DUPFD_CLOEXEC, 0);
  if (c < 0 || s < 0) {
    err = -errno;
    if (c >= 0) (void)close(c);
    free(sp);
    a->free_slots[a->nfree++] = slot;
    return int_value(env, err);
  }
  sp->addon = a;
  sp->slot = slot;
  sp->pair.data = sp;
  err = pair_start(&a->pl, &sp->pair, c, s, initial, initial_len, ceof, seof, (uint64_t)idle, on_pair_done);
  if (err != 0) {
    (void)close(c);
    (void)close(s);
    /* Handles opened before the failure release the pair when they are closed. */
    if (sp->pair.handles_open == 0) free(sp);
    a->free_slots[a->nfree++] = slot;
    return int_value(env, err);
  }
  pair_set_fin(&sp->pair, client_fin, server_fin);
  a->slots[slot] = sp;
  a->live++;
  return int_value(env, (int32_t)slot);
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct addon *a = addon_of(env);
  uint32_t slot;
  if (a == NULL || argc < 1) return throw_last(env, "close(slot)");
  CHECK(napi_get_value_uint32(env, argv[0], &slot));
  struct slot_pair *sp = slot < a->nslots ? a->slots[slot] : NULL;
  if (sp != NULL) {
    fill_counts(a, &sp->pair);
    free_slot(a, sp);
    pair_close(&sp->pair);
  }
  CHECK(napi_get_boolean(env, sp != NULL, &out));
  return out;
}

static napi_value js_counts(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct addon *a = addon_of(env);
  uint32_t slot;
  if (a == NULL || argc < 1) return throw_last(env, "counts(slot)");
  CHECK(napi_get_value_uint32(env, argv[0], &slot));
  struct slot_pair *sp = slot < a->nslots ? a->slots[slot] : NULL;
  if (sp != NULL) fill_counts(a, &sp->pair);
  CHECK(napi_get_boolean(env, sp != NULL, &out));
  return out;
}

/* ── stage 2: sockets ───────────────────────────────────────────────────────────────────────────── */

static int take_sock_slot(struct addon *a, uint32_t *out) {
  if (a->nfree_socks > 0) {
    *out = a->free_socks[--a->nfree_socks];
    return 0;
  }
  if (a->nsocks == a->sock_cap) {
    uint32_t cap = a->sock_cap == 0 ? 256 : a->sock_cap * 2;
    struct nsock **socks = realloc(a->socks, sizeof *socks * cap);
    if (socks == NULL) return -ENOMEM;
    a->socks = socks;
    uint32_t *free_socks = realloc(a->free_socks, sizeof *free_socks * cap);
    if (free_socks == NULL) return -ENOMEM;
    a->free_socks = free_socks;
    a->sock_cap = cap;
  }
  *out = a->nsocks++;
  return 0;
}

static int bind_sock(struct addon *a, struct nsock *s) {
  uint32_t slot;
  int err = take_sock_slot(a, &slot);
  if (err != 0) return err;
  s->id = slot;
  a->socks[slot] = s;
  a->live_socks++;
  return 0;
}

/* The slot goes back to the free list; the socket itself is closed, detached or paired by the caller. */
static void unbind_sock(struct addon *a, struct nsock *s) {
  a->socks[s->id] = NULL;
  a->free_socks[a->nfree_socks++] = s->id;
  a->live_socks--;
}

static struct nsock *sock_at(struct addon *a, uint32_t slot) { return slot < a->nsocks ? a->socks[slot] : NULL; }

static void on_sock_event(struct nsock *s, int ev, int n, struct nsock *fresh) {
  struct addon *a = (struct addon *)((char *)s->pl - offsetof(struct addon, pl));
  napi_env env = a->env;
  uint32_t slot = s->id;
  uint32_t listener = s->listener;
  if (ev == SOCK_EV_ACCEPT) {
    if (bind_sock(a, fresh) != 0) {
      /* No slot for it (out of memory): closed before JavaScript knew it, and said as an accept failure. */
      sock_close(fresh, 0);
      ev = SOCK_EV_ACCEPT_FAILED;
      n = ENOMEM;
    } else {
      slot = fresh->id;
    }
  }
  if (ev == SOCK_EV_CONNECT_FAILED || ev == SOCK_EV_ERROR) {
    /* Closed here, not by JavaScript: nothing can be done with it, and a stale slot must not linger. */
    unbind_sock(a, s);
    sock_close(s, 0);
  }
  struct js_call c;
  if (!js_begin(a, &c)) return;
  napi_value argv[4];
  if (napi_create_int32(env, ev, &argv[0]) == napi_ok && napi_create_uint32(env, slot, &argv[1]) == napi_ok &&
      napi_create_int32(env, n, &argv[2]) == napi_ok && napi_create_uint32(env, listener, &argv[3]) == napi_ok)
    js_call_fn(a, &c, a->on_sock, 4, argv);
  js_end(a, &c);
}

static napi_value js_sock_init(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct addon *a = addon_of(env);
  if (a == NULL || argc < 2 || !a->pl_ready || a->async == NULL) return throw_last(env, "sockInit(onSock, readBuffer): call init first");
  void *data;
  size_t len;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  if (len == 0) return throw_last(env, "sockInit: empty read buffer");
  if (a->on_sock != NULL) CHECK(napi_delete_reference(env, a->on_sock));
  if (a->read_buf_ref != NULL) CHECK(napi_delete_reference(env, a->read_buf_ref));
  a->on_sock = a->read_buf_ref = NULL;
  CHECK(napi_create_reference(env, argv[0], 1, &a->on_sock));
  CHECK(napi_create_reference(env, argv[1], 1, &a->read_buf_ref));
  a->pl.read_buf = data;
  a->pl.read_len = len;
  a->pl.sock_event = on_sock_event;
  return NULL;
}

static struct addon *sock_ready(napi_env env) {
  struct addon *a = addon_of(env);
  return a != NULL && a->pl.sock_event != NULL ? a : NULL;
}

static napi_value js_listen(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct addon *a = sock_ready(env);
  if (a == NULL || argc < 2) return throw_last(env, "listen(fd, listener): call sockInit first");
  int32_t fd;
  uint32_t listener;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_uint32(env, argv[1], &listener));
  if (fd < 0) return int_value(env, -EBADF);
  struct nsock *s;
  int err = sock_listen(&a->pl, fd, listener, &s);
  if (err != 0) return int_value(env, err);
  if ((err = bind_sock(a, s)) != 0) {
    sock_close(s, 0);
    return int_value(env, err);
  }
  return int_value(env, (int32_t)s->id);
}

static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct addon *a = sock_ready(env);
  if (a == NULL || argc < 3) return throw_last(env, "connect(address, port, ipv6): call sockInit first");
  char host[INET6_ADDRSTRLEN + 1];
  size_t host_len;
  uint32_t port;
  bool v6;
  CHECK(napi_get_value_string_utf8(env, argv[0], host, sizeof host, &host_len));
  CHECK(napi_get_value_uint32(env, argv[1], &port));
  CHECK(napi_get_value_bool(env, argv[2], &v6));
  if (port > 65535) return int_value(env, -EINVAL);
  struct sockaddr_in6 to;
  socklen_t to_len;
  memset(&to, 0, sizeof to);
  if (v6) {
    to.sin6_family = AF_INET6;
    to.sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &to.sin6_addr) != 1) return int_value(env, -EINVAL);
    to_len = sizeof to;
  } else {
    struct sockaddr_in *v4 = (struct sockaddr_in *)(void *)&to;
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &v4->sin_addr) != 1) return int_value(env, -EINVAL);
    to_len = sizeof *v4;
  }
  struct nsock *s;
  int err = sock_connect(&a->pl, (struct sockaddr *)&to, to_len, &s);
  if (err != 0) return int_value(env, err);
  if ((err = bind_sock(a, s)) != 0) {
    sock_close(s, 0);
    return int_value(env, err);
  }
  return int_value(env, (int32_t)s->id);
}

/* (slot, …) arguments: the live socket, or NULL (a slot already closed answers -EBADF). */
static napi_value sock_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, struct nsock **out) {
  size_t argc = want;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct addon *a = sock_ready(env);
  if (a == NULL || argc < want) return throw_last(env, "socket call before sockInit, or missing arguments");
  uint32_t slot;
  CHECK(napi_get_value_uint32(env, argv[0], &slot));
  *out = sock_at(a, slot);
  return argv[0];
}

static napi_value js_sock_read(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  struct nsock *s;
  if (sock_args(env, info, 2, argv, &s) == NULL) return NULL;
  bool on;
  CHECK(napi_get_value_bool(env, argv[1], &on));
  return int_value(env, s == NULL ? -EBADF : sock_set_reading(s, on));
}

static napi_value js_sock_close(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  struct nsock *s;
  if (sock_args(env, info, 2, argv, &s) == NULL) return NULL;
  bool reset;
  CHECK(napi_get_value_bool(env, argv[1], &reset));
  if (s != NULL) {
    unbind_sock(addon_of(env), s);
    sock_close(s, reset);
  }
  return NULL;
}

static napi_value js_sock_detach(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct nsock *s;
  if (sock_args(env, info, 1, argv, &s) == NULL) return NULL;
  if (s == NULL) return int_value(env, -EBADF);
  unbind_sock(addon_of(env), s);
  return int_value(env, sock_detach(s));
}

static napi_value js_sock_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct nsock *s;
  if (sock_args(env, info, 1, argv, &s) == NULL) return NULL;
  return int_value(env, s == NULL ? -EBADF : s->fd);
}

static napi_value js_sock_name(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  struct nsock *s;
  if (sock_args(env, info, 2, argv, &s) == NULL) return NULL;
  bool local;
  CHECK(napi_get_value_bool(env, argv[1], &local));
  if (s == NULL) return int_value(env, -EBADF);
  char buf[INET6_ADDRSTRLEN + 1];
  int port = 0;
  int err = sock_name(s, local, buf, sizeof buf, &port);
  if (err != 0) return int_value(env, err);
  napi_value out, addr, p;
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_string_latin1(env, buf, NAPI_AUTO_LENGTH, &addr));
  CHECK(napi_create_int32(env, port, &p));
  CHECK(napi_set_element(env, out, 0, addr));
  CHECK(napi_set_element(env, out, 1, p));
  return out;
}

static napi_value js_adopt(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct addon *a = sock_ready(env);
  if (a == NULL || argc < 6 || a->counts == NULL) return throw_last(env, "adopt: call init and sockInit first");
  uint32_t cslot, sslot;
  bool ceof, seof;
  double idle;
  CHECK(napi_get_value_uint32(env, argv[0], &cslot));
  CHECK(napi_get_value_uint32(env, argv[1], &sslot));
  CHECK(napi_get_value_bool(env, argv[3], &ceof));
  CHECK(napi_get_value_bool(env, argv[4], &seof));
  CHECK(napi_get_value_double(env, argv[5], &idle));
  const char *initial = NULL;
  size_t initial_len = 0;
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[2], &t));
  if (t != napi_undefined && t != napi_null) {
    void *d;
    CHECK(napi_get_buffer_info(env, argv[2], &d, &initial_len));
    initial = d;
  }
  struct nsock *c = sock_at(a, cslot), *s = sock_at(a, sslot);
  if (c == NULL || s == NULL || c == s || c->state != SOCK_OPEN || s->state != SOCK_OPEN || !(idle >= 0)) return int_value(env, -EBADF);
  uint64_t client_fin, server_fin;
  if (fin_arg(env, argv[6], &client_fin) != 0 || fin_arg(env, argv[7], &server_fin) != 0) return int_value(env, -EINVAL);
  uint32_t slot;
  int err = take_slot(a, &slot);
  if (err != 0) return int_value(env, err);
  struct slot_pair *sp = malloc(sizeof *sp);
  if (sp == NULL) {
    a->free_slots[a->nfree++] = slot;
    return int_value(env, -ENOMEM);
  }
  sp->addon = a;
  sp->slot = slot;
  sp->pair.data = sp;
  err = pair_adopt(&a->pl, &sp->pair, c->fd, c->events != 0, s->fd, s->events != 0, initial, initial_len, ceof, seof,
                   (uint64_t)idle, on_pair_done);
  if (err != 0) {
    /* Both descriptors are out of the set now and still the sockets': the caller carries on in JS. */
    sock_unwatched(c);
    sock_unwatched(s);
    if (sp->pair.handles_open == 0) free(sp);
    a->free_slots[a->nfree++] = slot;
    return int_value(env, err);
  }
  pair_set_fin(&sp->pair, client_fin, server_fin);
  unbind_sock(a, c);
  unbind_sock(a, s);
  sock_forget(c);
  sock_forget(s);
  a->slots[slot] = sp;
  a->live++;
  return int_value(env, (int32_t)slot);
}

static napi_value js_live_socks(napi_env env, napi_callback_info info) {
  (void)info;
  struct addon *a = addon_of(env);
  return int_value(env, a == NULL ? 0 : (int32_t)a->live_socks);
}

static napi_value js_live(napi_env env, napi_callback_info info) {
  (void)info;
  struct addon *a = addon_of(env);
  return int_value(env, a == NULL ? 0 : (int32_t)a->live);
}

/* The forwarding code on two socketpairs, without the loop: bytes, then FIN, from one to the other.
 * It proves the syscalls the engine needs work here (a seccomp filter or an odd kernel would fail it). */
static const char *self_check(struct addon *a) {
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  const char *why = NULL;
  static const char probe[] = "twinport self-check";
  char got[sizeof probe];
  struct pair p;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, in) != 0 ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, out) != 0) {
    why = "socketpair failed";
    goto done;
  }
  memset(&p, 0, sizeof p);
  p.side[SIDE_CLIENT].fd = in[1];
  p.side[SIDE_SERVER].fd = out[0];
  if (send(in[0], probe, sizeof probe, MSG_NOSIGNAL) != (ssize_t)sizeof probe) {
    why = "send failed";
    goto done;
  }
  if (pair_pump_once(&a->pl, &p, SIDE_CLIENT) != 0 || p.dir[SIDE_CLIENT].pend != NULL) {
    why = "forwarding failed";
    goto done;
  }
  if (recv(out[1], got, sizeof got, 0) != (ssize_t)sizeof probe || memcmp(got, probe, sizeof probe) != 0) {
    why = "bytes forwarded wrong";
    goto done;
  }
  if (shutdown(in[0], SHUT_WR) != 0 || pair_pump_once(&a->pl, &p, SIDE_CLIENT) != 0 || !p.dir[SIDE_CLIENT].shut) {
    why = "FIN not forwarded";
    goto done;
  }
  if (recv(out[1], got, sizeof got, 0) != 0) why = "FIN not seen";
done:
  for (int i = 0; i < 2; i++) {
    if (in[i] >= 0) (void)close(in[i]);
    if (out[i] >= 0) (void)close(out[i]);
  }
  return why;
}

static napi_value js_self_check(napi_env env, napi_callback_info info) {
  (void)info;
  struct addon *a = addon_of(env);
  const char *why = a == NULL || !a->pl_ready ? "no event loop buffers" : self_check(a);
  napi_value out;
  if (why == NULL) CHECK(napi_get_null(env, &out));
  else CHECK(napi_create_string_utf8(env, why, NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value js_splice(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct addon *a = addon_of(env);
  uint32_t mode;
  if (a == NULL || !a->pl_ready || argc < 1) return throw_last(env, "splice(mode)");
  CHECK(napi_get_value_uint32(env, argv[0], &mode));
  if (mode > SPLICE_ALWAYS) {
    napi_throw_range_error(env, "TWP_ERR_NATIVE", "splice mode must be 0, 1 or 2");
    return NULL;
  }
  const char *why = mode == SPLICE_OFF ? NULL : splice_self_check();
  splice_set_mode(&a->pl, why == NULL ? (int)mode : SPLICE_OFF);
  if (why == NULL) CHECK(napi_get_null(env, &out));
  else CHECK(napi_create_string_utf8(env, why, NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value js_splice_stats(napi_env env, napi_callback_info info) {
  (void)info;
  struct addon *a = addon_of(env);
  if (a == NULL || !a->pl_ready) return throw_last(env, "spliceStats()");
  double v[3] = {(double)a->pl.pipes, (double)a->pl.pipes_opened, (double)a->pl.spliced};
  napi_value out, n;
  CHECK(napi_create_array_with_length(env, 3, &out));
  for (uint32_t i = 0; i < 3; i++) {
    CHECK(napi_create_double(env, v[i], &n));
    CHECK(napi_set_element(env, out, i, n));
  }
  return out;
}

/* At environment teardown (process exit, a worker thread ending): live pairs close their descriptors,
 * then the addon's memory goes. One hook does both, in that order: closing a pair gives its chunks back
 * to the loop's buffers. A pair's own memory is freed by its handles' close callbacks if the loop still
 * runs them. */
static void cleanup(void *arg) {
  struct addon *a = arg;
  for (uint32_t i = 0; i < a->nsocks; i++) {
    struct nsock *s = a->socks[i];
    if (s == NULL) continue;
    unbind_sock(a, s);
    sock_close(s, 0);
  }
  if (a->pl_ready) sock_free_dead(&a->pl);
  free(a->socks);
  free(a->free_socks);
  for (uint32_t i = 0; i < a->nslots; i++) {
    struct slot_pair *sp = a->slots[i];
    if (sp == NULL) continue;
    free_slot(a, sp);
    pair_close(&sp->pair);
  }
  if (a->pl_ready) pair_loop_free(&a->pl);
  free(a->slots);
  free(a->free_slots);
  free(a);
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  struct addon *a = calloc(1, sizeof *a);
  if (a == NULL) return throw_last(env, "out of memory");
  a->env = env;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) == napi_ok && pair_loop_init(&a->pl, loop) == 0) a->pl_ready = 1;
  if (napi_add_env_cleanup_hook(env, cleanup, a) != napi_ok) {
    cleanup(a);
    return throw_last(env, "napi_add_env_cleanup_hook");
  }
  if (napi_set_instance_data(env, a, NULL, NULL) != napi_ok) {
    napi_remove_env_cleanup_hook(env, cleanup, a);
    cleanup(a);
    return throw_last(env, "napi_set_instance_data");
  }
  napi_property_descriptor props[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"selfCheck", NULL, js_self_check, NULL, NULL, NULL, napi_default, NULL},
      {"live", NULL, js_live, NULL, NULL, NULL, napi_default, NULL},
      {"counts", NULL, js_counts, NULL, NULL, NULL, napi_default, NULL},
      {"splice", NULL, js_splice, NULL, NULL, NULL, napi_default, NULL},
      {"spliceStats", NULL, js_splice_stats, NULL, NULL, NULL, napi_default, NULL},
      {"sockInit", NULL, js_sock_init, NULL, NULL, NULL, napi_default, NULL},
      {"listen", NULL, js_listen, NULL, NULL, NULL, napi_default, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL},
      {"sockRead", NULL, js_sock_read, NULL, NULL, NULL, napi_default, NULL},
      {"sockClose", NULL, js_sock_close, NULL, NULL, NULL, napi_default, NULL},
      {"sockDetach", NULL, js_sock_detach, NULL, NULL, NULL, napi_default, NULL},
      {"sockFd", NULL, js_sock_fd, NULL, NULL, NULL, napi_default, NULL},
      {"sockName", NULL, js_sock_name, NULL, NULL, NULL, napi_default, NULL},
      {"adopt", NULL, js_adopt, NULL, NULL, NULL, napi_default, NULL},
      {"liveSockets", NULL, js_live_socks, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}
