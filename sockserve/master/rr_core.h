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

/* A connection: a Python object (policy API), or an accepted fd with the
 * index of its listener's key (hot path; obj is NULL). */
typedef struct { PyObject *obj; int fd; int key; } Conn;
typedef struct { Conn conn; int rehand; } Queued;
typedef struct { long long seq; Conn conn; } Flight;

typedef struct {
    long long id;
    long long handed;  /* hand-offs so far: the least-handed worker with room goes next */
    int n;             /* un-acked hand-offs, in seq order */
    Flight *flights;   /* window slots */
} Worker;

enum { ACT_HANDOFF = 0, ACT_RELEASE = 1 };
typedef struct { int kind; int rehand; long long worker; long long seq; Conn conn; } Act;

typedef struct {
    int window;
    long long seq;
    Worker *workers; Py_ssize_t nworkers, capworkers;  /* round_robin's _inflight keys */
    long long *rotation; Py_ssize_t nrot, caprot;      /* next first */
    Queued *queue; Py_ssize_t qhead, qlen, qcap;       /* ring buffer */
    Act *acts; Py_ssize_t nacts, capacts;              /* decided, not yet done */
} RR;

/* All return 0, or -1 with a Python exception set (MemoryError). */
int rr_init(RR *rr, int window);
void rr_free(RR *rr);  /* does not touch conn objects: see rr_visit_conns */
int rr_add(RR *rr, long long worker);
int rr_stop(RR *rr, long long worker);
int rr_remove(RR *rr, long long worker);
int rr_distribute(RR *rr, Conn conn);
/* 1: ``worker`` does not hold ``seq`` (a protocol error; nothing changed). */
int rr_ack(RR *rr, long long worker, long long seq, int accepted);
/* 1 and the head of the queue in *out (removed; the caller owns it), or 0 if empty. */
int rr_pop_queued(RR *rr, Conn *out);
long long rr_capacity(const RR *rr);
long long rr_waiting(const RR *rr);
Worker *rr_worker(const RR *rr, long long worker);
/* Calls fn on every conn the policy holds (queued or in flight). */
void rr_visit_conns(RR *rr, void (*fn)(Conn *, void *), void *arg);

#endif
