/* The rr policy (round_robin.py) in C; see rr_core.h.  No I/O. */
#include "rr_core.h"

#include <string.h>

static int grow(void **buf, Py_ssize_t *cap, Py_ssize_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    Py_ssize_t cap2 = *cap ? *cap * 2 : 8;
    while (cap2 < need)
        cap2 *= 2;
    void *p = PyMem_Realloc(*buf, (size_t)cap2 * size);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = p;
    *cap = cap2;
    return 0;
}

int rr_init(RR *rr, int window)
{
    memset(rr, 0, sizeof(*rr));
    rr->window = window;
    return 0;
}

void rr_free(RR *rr)
{
    for (Py_ssize_t i = 0; i < rr->nworkers; i++)
        PyMem_Free(rr->workers[i].flights);
    PyMem_Free(rr->workers);
    PyMem_Free(rr->rotation);
    PyMem_Free(rr->queue);
    PyMem_Free(rr->acts);
    memset(rr, 0, sizeof(*rr));
}

Worker *rr_worker(const RR *rr, long long worker)
{
    for (Py_ssize_t i = 0; i < rr->nworkers; i++)
        if (rr->workers[i].id == worker)
            return &rr->workers[i];
    return NULL;
}

static Py_ssize_t rotation_index(const RR *rr, long long worker)
{
    for (Py_ssize_t i = 0; i < rr->nrot; i++)
        if (rr->rotation[i] == worker)
            return i;
    return -1;
}

static void rotation_delete(RR *rr, Py_ssize_t i)
{
    memmove(&rr->rotation[i], &rr->rotation[i + 1], (size_t)(rr->nrot - i - 1) * sizeof(long long));
    rr->nrot--;
}

/* ------------------------------------------------------------ queue (deque) */
static int queue_reserve(RR *rr)
{
    if (rr->qlen < rr->qcap)
        return 0;
    Py_ssize_t cap2 = rr->qcap ? rr->qcap * 2 : 64;
    Queued *q = PyMem_Malloc((size_t)cap2 * sizeof(Queued));
    if (q == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < rr->qlen; i++)
        q[i] = rr->queue[(rr->qhead + i) % rr->qcap];
    PyMem_Free(rr->queue);
    rr->queue = q;
    rr->qhead = 0;
    rr->qcap = cap2;
    return 0;
}

static int queue_append(RR *rr, Conn conn, int rehand)
{
    if (queue_reserve(rr) < 0)
        return -1;
    rr->queue[(rr->qhead + rr->qlen) % rr->qcap] = (Queued){conn, rehand};
    rr->qlen++;
    return 0;
}

static int queue_appendleft(RR *rr, Conn conn, int rehand)
{
    if (queue_reserve(rr) < 0)
        return -1;
    rr->qhead = (rr->qhead + rr->qcap - 1) % rr->qcap;
    rr->queue[rr->qhead] = (Queued){conn, rehand};
    rr->qlen++;
    return 0;
}

static Queued queue_popleft(RR *rr)
{
    Queued item = rr->queue[rr->qhead];
    rr->qhead = (rr->qhead + 1) % rr->qcap;
    rr->qlen--;
    return item;
}

/* ------------------------------------------------------------ actions */
static int emit(RR *rr, int kind, long long worker, long long seq, Conn conn, int rehand)
{
    if (grow((void **)&rr->acts, &rr->capacts, rr->nacts + 1, sizeof(Act)) < 0)
        return -1;
    rr->acts[rr->nacts++] = (Act){kind, rehand, worker, seq, conn};
    return 0;
}

/* _next_worker: the least-handed worker with room (ties in rotation order);
 * it goes to the back of the rotation. */
static Worker *next_worker(RR *rr)
{
    Py_ssize_t best = -1;
    Worker *bw = NULL;
    for (Py_ssize_t i = 0; i < rr->nrot; i++) {
        Worker *w = rr_worker(rr, rr->rotation[i]);
        if (w->n < rr->window && (bw == NULL || w->handed < bw->handed)) {
            best = i;
            bw = w;
        }
    }
    if (bw != NULL) {
        long long id = rr->rotation[best];
        rotation_delete(rr, best);
        rr->rotation[rr->nrot++] = id;
    }
    return bw;
}

static int drain(RR *rr)
{
    while (rr->qlen) {
        Worker *w = next_worker(rr);
        if (w == NULL)
            break;
        if (grow((void **)&rr->acts, &rr->capacts, rr->nacts + 1, sizeof(Act)) < 0)
            return -1;
        Queued item = queue_popleft(rr);
        long long seq = ++rr->seq;
        w->flights[w->n++] = (Flight){seq, item.conn};
        w->handed++;
        emit(rr, ACT_HANDOFF, w->id, seq, item.conn, item.rehand);  /* room reserved above */
    }
    return 0;
}

/* ------------------------------------------------------------ operations */
int rr_add(RR *rr, long long worker)
{
    if (rr_worker(rr, worker) == NULL) {
        if (grow((void **)&rr->workers, &rr->capworkers, rr->nworkers + 1, sizeof(Worker)) < 0)
            return -1;
        Flight *flights = PyMem_Malloc((size_t)rr->window * sizeof(Flight));
        if (flights == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        rr->workers[rr->nworkers++] = (Worker){worker, 0, 0, flights};
    }
    if (rotation_index(rr, worker) < 0) {
        if (grow((void **)&rr->rotation, &rr->caprot, rr->nrot + 1, sizeof(long long)) < 0)
            return -1;
        long long level = 0;  /* joiners start level: min handed in the rotation, else 0 */
        for (Py_ssize_t i = 0; i < rr->nrot; i++) {
            long long h = rr_worker(rr, rr->rotation[i])->handed;
            if (i == 0 || h < level)
                level = h;
        }
        rr_worker(rr, worker)->handed = level;
        rr->rotation[rr->nrot++] = worker;
    }
    return drain(rr);
}

int rr_stop(RR *rr, long long worker)
{
    Py_ssize_t i = rotation_index(rr, worker);
    if (i >= 0)
        rotation_delete(rr, i);
    return drain(rr);
}

int rr_remove(RR *rr, long long worker)
{
    Py_ssize_t i = rotation_index(rr, worker);
    if (i >= 0)
        rotation_delete(rr, i);
    Worker *w = rr_worker(rr, worker);
    if (w != NULL) {
        for (int k = w->n - 1; k >= 0; k--) {  /* back at the head of the queue, in seq order */
            if (queue_appendleft(rr, w->flights[k].conn, 1) < 0)
                return -1;  /* the conns not yet queued stay with w: still visited, not lost */
            w->n = k;
        }
        PyMem_Free(w->flights);
        Py_ssize_t at = w - rr->workers;
        memmove(w, w + 1, (size_t)(rr->nworkers - at - 1) * sizeof(Worker));
        rr->nworkers--;
    }
    return drain(rr);
}

int rr_distribute(RR *rr, Conn conn)
{
    if (queue_append(rr, conn, 0) < 0)
        return -1;
    return drain(rr);
}

int rr_ack(RR *rr, long long worker, long long seq, int accepted)
{
    Worker *w = rr_worker(rr, worker);
    int k = 0;
    while (w != NULL && k < w->n && w->flights[k].seq != seq)
        k++;
    if (w == NULL || k == w->n)
        return 1;
    if (grow((void **)&rr->acts, &rr->capacts, rr->nacts + 1, sizeof(Act)) < 0 ||
        (!accepted && queue_reserve(rr) < 0))
        return -1;
    Conn conn = w->flights[k].conn;
    memmove(&w->flights[k], &w->flights[k + 1], (size_t)(w->n - k - 1) * sizeof(Flight));
    w->n--;
    if (accepted) {
        emit(rr, ACT_RELEASE, worker, seq, conn, 0);
        return drain(rr);
    }
    queue_appendleft(rr, conn, 1);
    return rr_stop(rr, worker);  /* a worker that says no is closing */
}

int rr_pop_queued(RR *rr, Conn *out)
{
    if (rr->qlen == 0)
        return 0;
    *out = queue_popleft(rr).conn;
    return 1;
}

long long rr_capacity(const RR *rr)
{
    long long free = 0;
    for (Py_ssize_t i = 0; i < rr->nrot; i++)
        free += rr->window - rr_worker(rr, rr->rotation[i])->n;
    return free - rr->qlen;
}

long long rr_waiting(const RR *rr)
{
    long long n = rr->qlen;
    for (Py_ssize_t i = 0; i < rr->nworkers; i++)
        n += rr->workers[i].n;
    return n;
}

void rr_visit_conns(RR *rr, void (*fn)(Conn *, void *), void *arg)
{
    for (Py_ssize_t i = 0; i < rr->qlen; i++)
        fn(&rr->queue[(rr->qhead + i) % rr->qcap].conn, arg);
    for (Py_ssize_t i = 0; i < rr->nworkers; i++)
        for (int k = 0; k < rr->workers[i].n; k++)
            fn(&rr->workers[i].flights[k].conn, arg);
}
