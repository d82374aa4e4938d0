/* The rr policy of round_robin.py in C: same state, same moves, same actions.
 *
 * Pure: no system calls here (the I/O is in _native.c).  Each operation
 * appends the actions it decides to ``acts``; the caller turns them into
 * Python Handoff/Release objects (the policy API) or executes them (the hot
 * path).  round_robin.py is the reference; tests/unit/test_native_rr.py drives
 * both with the same random operations and compares every action.
 */
#ifndef SOCKSERVE_RR_CORE_H
#define SOCKSERVE_RR_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* A connection: a Python object (policy API) or an accepted fd (hot path; obj is NULL),
 * and the index of its key (the Engine's key table). */
typedef struct { PyObject *obj; int fd; int key; } Conn;
typedef struct { Conn conn; int rehand; } Queued;
typedef struct { long long seq; Conn conn; } Flight;

typedef struct {
    long long id;
    int n;             /* un-acked hand-offs (of any key), in seq order */
    Flight *flights;   /* window slots: the window is per worker, over every key */
} Worker;

/* One key's rotation (Node's RoundRobinHandle): its workers, next first, and what this key
 * handed each (the least-handed with room goes next).  ``live``: known, from the first
 * add/distribute of the key to rr_forget. */
typedef struct { long long worker; long long handed; } Member;
typedef struct { int live; Member *m; Py_ssize_t n, cap; } Rot;

enum { ACT_HANDOFF = 0, ACT_RELEASE = 1 };
typedef struct { int kind; int rehand; long long worker; long long seq; Conn conn; } Act;

typedef struct {
    int window;
    long long seq;
    Worker *workers; Py_ssize_t nworkers, capworkers;  /* round_robin's _inflight keys */
    Rot *rots; Py_ssize_t nrots;                       /* by key index: round_robin's _rotations */
    Queued *queue; Py_ssize_t qhead, qlen, qcap;       /* ring buffer */
    Act *acts; Py_ssize_t nacts, capacts;              /* decided, not yet done */
} RR;

/* All return 0, or -1 with a Python exception set (MemoryError). */
int rr_init(RR *rr, int window);
void rr_free(RR *rr);  /* does not touch conn objects: see rr_visit_conns */
/* ``key``: an index of the Engine's key table, >= 0; rr_stop and rr_capacity take -1 for
 * every key.  Released conns (rr_forget, a reject or a death after it) come as ACT_RELEASE. */
int rr_add(RR *rr, long long worker, int key);
int rr_stop(RR *rr, long long worker, int key);
int rr_remove(RR *rr, long long worker);
int rr_forget(RR *rr, int key);
int rr_distribute(RR *rr, Conn conn);  /* conn.key >= 0 */
/* 1: ``worker`` does not hold ``seq`` (a protocol error; nothing changed). */
int rr_ack(RR *rr, long long worker, long long seq, int accepted);
/* 1 and the head of the queue in *out (removed; the caller owns it), or 0 if empty. */
int rr_pop_queued(RR *rr, Conn *out);
long long rr_capacity(const RR *rr, int key);
const Rot *rr_rot(const RR *rr, int key);  /* NULL unless live */
long long rr_waiting(const RR *rr);
Worker *rr_worker(const RR *rr, long long worker);
/* Calls fn on every conn the policy holds (queued or in flight). */
void rr_visit_conns(RR *rr, void (*fn)(Conn *, void *), void *arg);

#endif
