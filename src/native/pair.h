/* A spliced pair: two connected stream sockets whose bytes are forwarded both ways on the event loop,
 * until FIN went both ways, a side failed, nothing moved for the idle timeout, or a half-closed pair
 * outlived its FIN bound. The JavaScript side
 * hands over the descriptors after the peek, routing and connect; see docs/native.md.
 * Every pair of a loop is watched by one epoll instance of its own, itself watched by one uv_poll on
 * Node's loop: registering a descriptor is one epoll_ctl, where a uv_poll per descriptor cost three
 * more syscalls (libuv's pollability check and FIONBIO) and 160 bytes. */
#ifndef TWINPORT_PAIR_H
#define TWINPORT_PAIR_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

enum { SIDE_CLIENT = 0, SIDE_SERVER = 1 };

/* What an epoll event's data points at: a pair's side, or a socket not yet paired (sock.h). */
enum { PL_KIND_PAIR = 0, PL_KIND_SOCK = 1 };
struct nsock;

/* Why a pair ended: the same outcomes the JavaScript splice reports (docs/reasons.md). */
enum pair_reason {
  PAIR_DONE = 0,
  PAIR_CLIENT_RESET = 1,
  PAIR_SERVER_RESET = 2,
  PAIR_IDLE_TIMEOUT = 3,
  PAIR_CLIENT_FIN_TIMEOUT = 4, /* fin-timeout, detail client_fin */
  PAIR_SERVER_FIN_TIMEOUT = 5, /* fin-timeout, detail server_fin */
};

/* pair_set_fin: no bound after that side's FIN. */
#define PAIR_FIN_NONE UINT64_MAX

/* One direction: bytes read from side `src` and written to the other. */
struct pair_dir {
  char *pend;        /* bytes read but not yet accepted by the writer (NULL when none) */
  size_t pend_off;
  size_t pend_len;
  int pend_chunk;    /* pend came from the chunk pool (else malloc'd to size) */
  int eof;           /* FIN read from src */
  int shut;          /* FIN sent to the other side */
  uint32_t fin_ms;   /* once src's FIN is read, the pair lives at most this long (0: no bound); it sits
                        in what was padding, so the bound costs a pair no memory */
  struct pair_pipe *pipe; /* open once the direction switched to splice(2) (splice.h), else NULL */
};

struct pair;
struct pair_pipe;

struct pair_side {
  int kind;          /* PL_KIND_PAIR: first, as in struct nsock */
  int fd;
  int events;        /* EPOLLIN / EPOLLOUT registered now (0: not in the epoll set; -1: in it, with
                      * the data of the socket it was before the pair adopted it) */
  struct pair *pair; /* the epoll event's data: which pair, and (by address) which side */
  uint64_t bytes_read;
  uint64_t bytes_written;
};

/* Called once when the pair ends by itself; the descriptors are closed by then. */
typedef void (*pair_done_cb)(struct pair *p, enum pair_reason reason, int err);

struct pair_loop;

struct pair {
  struct pair_loop *pl;
  struct pair_side side[2];
  struct pair_dir dir[2];  /* dir[k]: from side k to side 1-k */
  uv_timer_t idle;         /* the idle checks, the FIN bound and a deferred failure share it */
  uint64_t idle_ms;
  uint64_t idle_seen;      /* bytes read by both sides at the idle timer's last check */
  uint64_t last_active;    /* loop time (ms) of the check that last saw them change */
  uint64_t fin_at;         /* loop time (ms) the FIN bound ends the pair; 0: not armed */
  int fin_side;            /* whose FIN armed it (the reason's detail) */
  int handles_open;        /* uv handles whose close callback is still due */
  int finished;
  int deferred_err;        /* a failure after pair_start sent bytes, reported from the loop (timer) */
  int deferred_side;
  int splice;              /* its splice mode (splice.h), or -1: no pipe could be had; in what was padding */
  pair_done_cb done;
  void *data;              /* the owner's (addon.c: its slot) */
};

/* The epoll set and forwarding buffers shared by the pairs of one loop. */
struct pair_loop {
  uv_loop_t *loop;
  int epfd;
  uv_poll_t *poll;         /* on epfd; referenced only while pairs are live */
  unsigned pairs;
  char *scratch;           /* every read lands here first: PAIR_CHUNK bytes */
  char **spare;            /* free chunks, at most PAIR_SPARE */
  int nspare;
  unsigned held;           /* pairs and sockets that keep Node's loop alive */
  /* Sockets before they are paired (sock.h): their events go to the owner, reads land in read_buf
   * (JavaScript's own buffer). A socket that goes away while a batch is dispatched waits in `dead`. */
  void (*sock_event)(struct nsock *s, int ev, int n, struct nsock *fresh);
  char *read_buf;
  size_t read_len;
  int dispatching;
  struct nsock *dead;
  /* Called after each dispatched batch (addon.c closes the one callback scope its calls shared). */
  void (*batch_end)(struct pair_loop *pl);
  int splice_mode;         /* for pairs started from now on (splice.h) */
  unsigned pipes;          /* open now (two descriptors each) */
  unsigned pipes_max;      /* at most a quarter of RLIMIT_NOFILE in pipes (splice.c) */
  uint64_t pipes_opened;   /* since start, and bytes written out of a pipe: the tests' proof of the path */
  uint64_t spliced;
};

#define PAIR_CHUNK (64 * 1024)
#define PAIR_SPARE 64

int pair_loop_init(struct pair_loop *pl, uv_loop_t *loop);
void pair_loop_free(struct pair_loop *pl);

/* Takes ownership of both descriptors (on success only). `initial` (copied) goes to the server before
 * any byte the client sends from now on; `client_eof` / `server_eof`: that side's FIN was read already.
 * Returns 0 or a negative errno. */
int pair_start(struct pair_loop *pl, struct pair *p, int client_fd, int server_fd, const char *initial,
               size_t initial_len, int client_eof, int server_eof, uint64_t idle_ms, pair_done_cb done);

/* pair_start for two sockets of this loop (sock.h) that may be in the epoll set already (`*_in_set`):
 * their registration is modified in place, nothing is duplicated. On failure both are out of the set. */
int pair_adopt(struct pair_loop *pl, struct pair *p, int client_fd, int client_in_set, int server_fd, int server_in_set,
               const char *initial, size_t initial_len, int client_eof, int server_eof, uint64_t idle_ms, pair_done_cb done);

/* Keeps Node's loop alive while anything of the loop lives (as a socket handle would). */
void pl_hold(struct pair_loop *pl);
void pl_drop(struct pair_loop *pl);

/* The FIN bounds (timeouts.client_fin / server_fin), in ms or PAIR_FIN_NONE; call right after a
 * successful pair_start. The first FIN read whose side has a bound arms it, once: the pair then ends with
 * PAIR_*_FIN_TIMEOUT that long after that FIN, whatever flows meanwhile (bytes still reset the idle
 * check). A FIN read before the hand-over (client_eof / server_eof) arms it now. As Node's setTimeout
 * does, 0 counts as 1 ms; a bound past UINT32_MAX ms (49 days) is held at that. */
void pair_set_fin(struct pair *p, uint64_t client_fin_ms, uint64_t server_fin_ms);

/* Ends the pair now without a completion: both descriptors closed (plain close, no RST). */
void pair_close(struct pair *p);

/* Called by the loop once the pair's uv handles are closed: its memory may be freed then. */
extern void pair_release(struct pair *p);

/* One forwarding step on one direction, without the loop (the self-check): read what there is from
 * side `from`, write it to the other. Returns 0 or a negative errno. */
int pair_pump_once(struct pair_loop *pl, struct pair *p, int from);

#endif
