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
    for (Py_ssize_t i = 0; i < rr->nrots; i++)
        PyMem_Free(rr->rots[i].m);
    PyMem_Free(rr->workers);
    PyMem_Free(rr->rots);
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

const Rot *rr_rot(const RR *rr, int key)
{
    return key >= 0 && key < rr->nrots && rr->rots[key].live ? &rr->rots[key] : NULL;
}

/* Key ``key``'s rotation, made live (and the table grown) if need be. */
static Rot *rot_live(RR *rr, int key)
{
    if (key >= rr->nrots) {
        Rot *r = PyMem_Realloc(rr->rots, (size_t)(key + 1) * sizeof(Rot));
        if (r == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(&r[rr->nrots], 0, (size_t)(key + 1 - rr->nrots) * sizeof(Rot));
        rr->rots = r;
        rr->nrots = key + 1;
    }
    rr->rots[key].live = 1;
    return &rr->rots[key];
}

static Py_ssize_t member_index(const Rot *rot, long long worker)
{
    for (Py_ssize_t i = 0; i < rot->n; i++)
        if (rot->m[i].worker == worker)
            return i;
    return -1;
}

static void member_delete(Rot *rot, Py_ssize_t i)
{
    memmove(&rot->m[i], &rot->m[i + 1], (size_t)(rot->n - i - 1) * sizeof(Member));
    rot->n--;
}

static void rot_leave(Rot *rot, long long worker)
{
    Py_ssize_t i = member_index(rot, worker);
    if (i >= 0)
        member_delete(rot, i);
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

/* _next_worker: the least-handed worker of ``rot`` with room (ties in rotation order);
 * it goes to the back of the rotation, one more handed. */
static Worker *next_worker(RR *rr, Rot *rot)
{
    Py_ssize_t best = -1;
    Worker *bw = NULL;
    for (Py_ssize_t i = 0; i < rot->n; i++) {
        Worker *w = rr_worker(rr, rot->m[i].worker);
        if (w->n < rr->window && (bw == NULL || rot->m[i].handed < rot->m[best].handed)) {
            best = i;
            bw = w;
        }
    }
    if (bw != NULL) {
        Member m = rot->m[best];
        member_delete(rot, best);
        m.handed++;
        rot->m[rot->n++] = m;
    }
    return bw;
}

/* Hands out the queue in order; what its key's rotation has no room for stays, in order
 * (compacted in place: an item kept never moves forward past one not yet looked at). */
static int drain(RR *rr)
{
    if (grow((void **)&rr->acts, &rr->capacts, rr->nacts + rr->qlen, sizeof(Act)) < 0)
        return -1;  /* room for every hand-off first: nothing below can fail */
    Py_ssize_t kept = 0, n = rr->qlen;
    for (Py_ssize_t i = 0; i < n; i++) {
        Queued item = rr->queue[(rr->qhead + i) % rr->qcap];
        Rot *rot = &rr->rots[item.conn.key];  /* live: queued conns of a forgotten key are gone */
        Worker *w = next_worker(rr, rot);
        if (w == NULL) {
            rr->queue[(rr->qhead + kept++) % rr->qcap] = item;
            continue;
        }
        long long seq = ++rr->seq;
        w->flights[w->n++] = (Flight){seq, item.conn};
        emit(rr, ACT_HANDOFF, w->id, seq, item.conn, item.rehand);  /* room reserved above */
    }
    rr->qlen = kept;
    return 0;
}

/* A conn back at the head of the queue (rehand), or released if its key was forgotten. */
static int requeue(RR *rr, Conn conn)
{
    if (rr_rot(rr, conn.key) == NULL)
        return emit(rr, ACT_RELEASE, -1, 0, conn, 0);
    return queue_appendleft(rr, conn, 1);
}

/* ------------------------------------------------------------ operations */
int rr_add(RR *rr, long long worker, int key)
{
    if (rr_worker(rr, worker) == NULL) {
        if (grow((void **)&rr->workers, &rr->capworkers, rr->nworkers + 1, sizeof(Worker)) < 0)
            return -1;
        Flight *flights = PyMem_Malloc((size_t)rr->window * sizeof(Flight));
        if (flights == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        rr->workers[rr->nworkers++] = (Worker){worker, 0, flights};
    }
    Rot *rot = rot_live(rr, key);
    if (rot == NULL)
        return -1;
    if (member_index(rot, worker) < 0) {
        if (grow((void **)&rot->m, &rot->cap, rot->n + 1, sizeof(Member)) < 0)
            return -1;
        long long level = 0;  /* joiners start level: min handed in the key's rotation, else 0 */
        for (Py_ssize_t i = 0; i < rot->n; i++)
            if (i == 0 || rot->m[i].handed < level)
                level = rot->m[i].handed;
        rot->m[rot->n++] = (Member){worker, level};
    }
    return drain(rr);
}

int rr_stop(RR *rr, long long worker, int key)
{
    for (Py_ssize_t k = 0; k < rr->nrots; k++)
        if (key < 0 || k == key)
            rot_leave(&rr->rots[k], worker);
    return drain(rr);
}

int rr_remove(RR *rr, long long worker)
{
    for (Py_ssize_t k = 0; k < rr->nrots; k++)
        rot_leave(&rr->rots[k], worker);
    Worker *w = rr_worker(rr, worker);
    if (w != NULL) {
        if (grow((void **)&rr->acts, &rr->capacts, rr->nacts + w->n, sizeof(Act)) < 0)
            return -1;
        for (int k = w->n - 1; k >= 0; k--) {  /* back at the head of the queue, in seq order */
            if (requeue(rr, w->flights[k].conn) < 0)
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

int rr_forget(RR *rr, int key)
{
    if (rr_rot(rr, key) == NULL)
        return 0;
    if (grow((void **)&rr->acts, &rr->capacts, rr->nacts + rr->qlen, sizeof(Act)) < 0)
        return -1;
    Rot *rot = &rr->rots[key];
    rot->live = 0;
    rot->n = 0;
    Py_ssize_t kept = 0, n = rr->qlen;
    for (Py_ssize_t i = 0; i < n; i++) {
        Queued item = rr->queue[(rr->qhead + i) % rr->qcap];
        if (item.conn.key == key)
            emit(rr, ACT_RELEASE, -1, 0, item.conn, 0);  /* room reserved above */
        else
            rr->queue[(rr->qhead + kept++) % rr->qcap] = item;
    }
    rr->qlen = kept;
    return 0;
}

int rr_distribute(RR *rr, Conn conn)
{
    if (rot_live(rr, conn.key) == NULL || queue_append(rr, conn, 0) < 0)
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
    requeue(rr, conn);  /* room reserved above */
    return rr_stop(rr, worker, conn.key);  /* a worker that says no is closing that key */
}

int rr_pop_queued(RR *rr, Conn *out)
{
    if (rr->qlen == 0)
        return 0;
    *out = queue_popleft(rr).conn;
    return 1;
}

long long rr_capacity(const RR *rr, int key)
{
    long long free = 0, queued = key < 0 ? rr->qlen : 0;
    if (key >= 0) {  /* the hot path's question, per accept: the key's rotation only */
        const Rot *rot = rr_rot(rr, key);
        for (Py_ssize_t i = 0; rot != NULL && i < rot->n; i++)
            free += rr->window - rr_worker(rr, rot->m[i].worker)->n;
        for (Py_ssize_t i = 0; i < rr->qlen; i++)
            queued += rr->queue[(rr->qhead + i) % rr->qcap].conn.key == key;
        return free - queued;
    }
    for (Py_ssize_t i = 0; i < rr->nworkers; i++) {  /* each worker once, if in some rotation */
        const Worker *w = &rr->workers[i];
        for (Py_ssize_t k = 0; k < rr->nrots; k++)
            if (member_index(&rr->rots[k], w->id) >= 0) {
                free += rr->window - w->n;
                break;
            }
    }
    return free - queued;
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
