/* The master's hand-off hot path: accept4, the policy (rr_core.c), sendmsg with
 * SCM_RIGHTS, close.  What it cannot do itself goes back to Python as ``spill``. */
#include "native.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_BATCH 64 /* handoff.ACCEPT_BATCH: accepts per wake-up */

static int grow(void **buf, Py_ssize_t *cap, Py_ssize_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    Py_ssize_t cap2 = *cap ? *cap * 2 : 4;
    void *p = PyMem_Realloc(*buf, (size_t)cap2 * size);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = p;
    *cap = cap2;
    return 0;
}

/* ------------------------------------------------------------ registration */
int key_index(Engine *e, PyObject *obj, int create)
{
    for (Py_ssize_t i = 0; i < e->nkeys; i++) {
        int same = PyObject_RichCompareBool(e->keys[i].key, obj, Py_EQ);
        if (same < 0)
            return -3;
        if (same)
            return (int)i;
    }
    if (!create)
        return -2;
    if (grow((void **)&e->keys, &e->capkeys, e->nkeys + 1, sizeof(Key)) < 0)
        return -3;
    e->keys[e->nkeys] = (Key){Py_NewRef(obj), NULL, 0};
    return (int)e->nkeys++;
}

/* key(key, prefix) -> index: the listener key (a str) and its NewConn record prefix. */
PyObject *Engine_key(Engine *e, PyObject *args)
{
    PyObject *key;
    const char *prefix;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "Uy#", &key, &prefix, &len))
        return NULL;
    int i = key_index(e, key, 1);
    if (i == -3)
        return NULL;
    char *copy = PyMem_Malloc((size_t)len + 1);
    if (copy == NULL)
        return PyErr_NoMemory();
    memcpy(copy, prefix, (size_t)len);
    PyMem_Free(e->keys[i].prefix);
    e->keys[i].prefix = copy;
    e->keys[i].prefix_len = len;
    return PyLong_FromLong(i);
}

Attached *attached(Engine *e, long long worker)
{
    for (Py_ssize_t i = 0; i < e->natt; i++)
        if (e->att[i].id == worker)
            return &e->att[i];
    return NULL;
}

PyObject *Engine_attach(Engine *e, PyObject *args)
{
    long long worker;
    int fd;
    PyObject *channel, *counters, *handle;
    if (!PyArg_ParseTuple(args, "LiOOO", &worker, &fd, &channel, &counters, &handle))
        return NULL;
    Attached *a = attached(e, worker);
    if (a == NULL) {
        if (grow((void **)&e->att, &e->capatt, e->natt + 1, sizeof(Attached)) < 0)
            return NULL;
        a = &e->att[e->natt++];
        *a = (Attached){worker, -1, NULL, NULL, NULL};
    }
    a->fd = fd;
    Py_XSETREF(a->channel, Py_NewRef(channel));
    Py_XSETREF(a->counters, Py_NewRef(counters));
    Py_XSETREF(a->handle, Py_NewRef(handle));
    Py_RETURN_NONE;
}

PyObject *Engine_detach(Engine *e, PyObject *arg)
{
    long long worker = PyLong_AsLongLong(arg);
    if (worker == -1 && PyErr_Occurred())
        return NULL;
    Attached *a = attached(e, worker);
    if (a != NULL) {
        PyObject *channel = a->channel, *counters = a->counters, *handle = a->handle;
        *a = e->att[--e->natt];
        Py_DECREF(channel);
        Py_DECREF(counters);
        Py_DECREF(handle);
    }
    Py_RETURN_NONE;
}

/* hooks(on_event, on_channel, time): Python's side of the hot path.
 *   on_event(spill, errno): do ``spill`` (actions C could not), handle an accept
 *     error, update the readers; called only when there is something to do or
 *     the capacity is (or was) not positive, so a steady flow runs no Python.
 *   on_channel(worker, record, state): see on_channel in native_acks.c.
 *   time(): the loop's clock, for the worker's last_seen. */
PyObject *Engine_hooks(Engine *e, PyObject *args)
{
    PyObject *on_event, *on_channel, *time_fn;
    if (!PyArg_ParseTuple(args, "OOO", &on_event, &on_channel, &time_fn))
        return NULL;
    Py_XSETREF(e->on_event, Py_NewRef(on_event));
    Py_XSETREF(e->on_channel_hook, Py_NewRef(on_channel));
    Py_XSETREF(e->time_fn, Py_NewRef(time_fn));
    Py_RETURN_NONE;
}

int check_hooks(Engine *e)
{
    if (e->on_event == NULL || HandoffType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the hot path needs configure() and hooks() first");
        return -1;
    }
    return 0;
}

/* Steals ``spill``.  Python hears only of what it must do; the listeners'
 * interest follows the workers' room here (sync_interest), without it. */
int notify(Engine *e, PyObject *spill, int err)
{
    int ret = sync_interest(e);
    if (ret == 0 && (PyList_GET_SIZE(spill) || err)) {
        PyObject *r = PyObject_CallFunction(e->on_event, "Oi", spill, err);
        ret = r == NULL ? -1 : 0;
        Py_XDECREF(r);
    }
    Py_DECREF(spill);
    return ret;
}

/* Back-pressure: a listener is polled (EPOLLIN in epfd) only while Python says accept and
 * its key's rotation has room; else its connections wait in the kernel's accept queue.
 * One epoll_ctl per listener when that flips, no Python. */
int sync_interest(Engine *e)
{
    for (Py_ssize_t i = 0; e->epfd >= 0 && i < e->nl; i++) {
        char want = e->accepting && rr_capacity(&e->rr, e->lkeys[i]) > 0;
        if (want == e->lint[i])
            continue;
        struct epoll_event ev = {.events = want ? EPOLLIN : 0, .data.u64 = (uint64_t)e->lfds[i]};
        if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, e->lfds[i], &ev) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        e->lint[i] = want;
    }
    return 0;
}

/* listen(fd, key) -> epfd: poll listener ``fd`` (accepted conns get key index ``key``). */
PyObject *Engine_listen(Engine *e, PyObject *args)
{
    int fd, key;
    if (!PyArg_ParseTuple(args, "ii", &fd, &key))
        return NULL;
    if (key < 0 || key >= e->nkeys || e->keys[key].prefix == NULL)
        return PyErr_Format(PyExc_ValueError, "unknown key index %d", key);
    if (e->epfd < 0 && (e->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (grow((void **)&e->lfds, &e->capl, e->nl + 1, sizeof(int)) < 0)
        return NULL;
    int *keys = PyMem_Realloc(e->lkeys, sizeof(int) * (size_t)e->capl);
    if (keys == NULL)
        return PyErr_NoMemory();
    e->lkeys = keys;
    char *lint = PyMem_Realloc(e->lint, (size_t)e->capl);
    if (lint == NULL)
        return PyErr_NoMemory();
    e->lint = lint;
    struct epoll_event ev = {.events = 0, .data.u64 = (uint64_t)fd};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    e->lfds[e->nl] = fd;
    e->lint[e->nl] = 0;
    e->lkeys[e->nl++] = key;
    if (sync_interest(e) < 0)
        return NULL;
    return PyLong_FromLong(e->epfd);
}

/* unlisten(fd): the listener is released (call before closing it); its key stays known
 * until forget(key), so its conns in flight still resolve. */
PyObject *Engine_unlisten(Engine *e, PyObject *arg)
{
    int fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    for (Py_ssize_t i = 0; i < e->nl; i++)
        if (e->lfds[i] == fd) {
            if (epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != EBADF && errno != ENOENT)
                return PyErr_SetFromErrno(PyExc_OSError);
            memmove(&e->lfds[i], &e->lfds[i + 1], sizeof(int) * (size_t)(e->nl - i - 1));
            memmove(&e->lkeys[i], &e->lkeys[i + 1], sizeof(int) * (size_t)(e->nl - i - 1));
            memmove(&e->lint[i], &e->lint[i + 1], (size_t)(e->nl - i - 1));
            e->nl--;
            e->lnext = 0;
            Py_RETURN_NONE;
        }
    return PyErr_Format(PyExc_ValueError, "fd %d is not a listener here", fd);
}

PyObject *Engine_set_accepting(Engine *e, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    e->accepting = on;
    if (sync_interest(e) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyObject *call_channel_hook(Engine *e, long long worker, PyObject *record, int state)
{
    return PyObject_CallFunction(e->on_channel_hook, "LOi", worker, record, state);
}

/* USE_OK, USE_CLOSED (the channel is closed), USE_FAULT (the worker is being replaced), -1. */
int attached_state(Attached *a)
{
    PyObject *closed = PyObject_GetAttr(a->channel, str_closed);
    PyObject *fault = closed ? PyObject_GetAttr(a->handle, str_fault) : NULL;
    int state = fault == NULL ? -1 : closed != Py_False ? USE_CLOSED : fault != Py_None ? USE_FAULT : USE_OK;
    Py_XDECREF(closed);
    Py_XDECREF(fault);
    return state;
}

/* ------------------------------------------------------------ sending */
/* 1 if nothing is queued on the channel (records must keep their order), else 0. */
static int channel_clear(Attached *a)
{
    PyObject *closed = PyObject_GetAttr(a->channel, str_closed);
    PyObject *pending = closed ? PyObject_GetAttr(a->channel, str_pending) : NULL;
    int clear = pending != NULL && closed == Py_False && PyLong_Check(pending) && PyLong_AsLong(pending) == 0;
    Py_XDECREF(closed);
    Py_XDECREF(pending);
    PyErr_Clear();  /* anything odd: the Python path decides */
    return clear;
}

int counter_add(PyObject *counters, PyObject *name, long n)
{
    if (n == 0)
        return 0;
    PyObject *old = PyObject_GetAttr(counters, name), *add = PyLong_FromLong(n), *sum = NULL;
    if (old != NULL && add != NULL)
        sum = PyNumber_Add(old, add);
    int ret = sum == NULL ? -1 : PyObject_SetAttr(counters, name, sum);
    Py_XDECREF(old);
    Py_XDECREF(add);
    Py_XDECREF(sum);
    return ret;
}

/* One NewConn record with the fds of acts idx[0..n) on ``fd``; 0 sent, -1 not. */
static int send_record(Engine *e, int fd, Key *key, Act *acts, const Py_ssize_t *idx, int n)
{
    char stack[512], *buf = stack;
    size_t need = (size_t)key->prefix_len + (size_t)n * 21 + 3;
    if (need > sizeof(stack) && (buf = PyMem_Malloc(need)) == NULL)
        return -1;
    memcpy(buf, key->prefix, (size_t)key->prefix_len);
    size_t len = (size_t)key->prefix_len;
    int fds[MAX_FDS];
    for (int i = 0; i < n; i++) {
        len += (size_t)sprintf(buf + len, i ? ",%lld" : "%lld", acts[idx[i]].seq);
        fds[i] = acts[idx[i]].conn.fd;
    }
    memcpy(buf + len, "]]", 2);
    len += 2;
    union { char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)]; struct cmsghdr align; } control;
    struct iovec iov = {buf, len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n)};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)n);
    ssize_t sent;
    do
        sent = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (buf != stack)
        PyMem_Free(buf);
    return sent == (ssize_t)len ? 0 : -1;
}

static int spill_act(Engine *e, PyObject *spill, Act *a)
{
    PyObject *item = act_object(e, a);
    int ret = item == NULL ? -1 : PyList_Append(spill, item);
    Py_XDECREF(item);
    return ret;
}

/* The hand-offs of one (worker, key), from acts[first] on, in order: sent in
 * records of MAX_FDS on the worker's channel, or spilled. */
static int send_group(Engine *e, PyObject *spill, Py_ssize_t first, Py_ssize_t *idx, long long *spilled,
                      Py_ssize_t *nspilled)
{
    Act *acts = e->rr.acts, *a0 = &acts[first];
    Py_ssize_t n = 0;
    for (Py_ssize_t j = first; j < e->rr.nacts; j++)
        if (acts[j].kind == ACT_HANDOFF && acts[j].worker == a0->worker && acts[j].conn.key == a0->conn.key)
            idx[n++] = j;
    Attached *at = attached(e, a0->worker);
    int direct = at != NULL && channel_clear(at);
    for (Py_ssize_t k = 0; direct && k < *nspilled; k++)
        direct = spilled[k] != a0->worker;
    long handed = 0, rehanded = 0;
    for (Py_ssize_t start = 0; start < n; start += MAX_FDS) {
        int chunk = (int)(n - start < MAX_FDS ? n - start : MAX_FDS);
        if (direct && send_record(e, at->fd, &e->keys[a0->conn.key], acts, idx + start, chunk) == 0) {
            handed += chunk;
            for (int i = 0; i < chunk; i++)
                rehanded += acts[idx[start + i]].rehand;
        } else {
            if (direct)
                spilled[(*nspilled)++] = a0->worker;
            direct = 0;
            for (int i = 0; i < chunk; i++)
                if (spill_act(e, spill, &acts[idx[start + i]]) < 0)
                    return -1;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        acts[idx[i]].kind = -1;  /* done */
    if (at != NULL && (counter_add(at->counters, str_handed, handed) < 0 ||
                       counter_add(at->counters, str_rehanded, rehanded) < 0))
        return -1;
    return 0;
}

/* Does the pending acts: closes released fds, sends hand-offs; the rest -> spill (a new list). */
PyObject *exec_acts(Engine *e)
{
    Py_ssize_t n = e->rr.nacts, nspilled = 0;
    PyObject *spill = PyList_New(0);
    Py_ssize_t *idx = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n + 1));
    long long *spilled = PyMem_Malloc(sizeof(long long) * (size_t)(n + 1));
    if (spill == NULL || idx == NULL || spilled == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        Act *a = &e->rr.acts[i];
        if (a->conn.obj != NULL) {  /* a Python conn: the Python path does it */
            if (spill_act(e, spill, a) < 0)
                goto fail;
            if (a->kind == ACT_RELEASE)
                Py_CLEAR(a->conn.obj);
            a->kind = -1;
        } else if (a->kind == ACT_RELEASE) {
            close(a->conn.fd);
            a->kind = -1;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (e->rr.acts[i].kind == ACT_HANDOFF && send_group(e, spill, i, idx, spilled, &nspilled) < 0)
            goto fail;
    PyMem_Free(idx);
    PyMem_Free(spilled);
    acts_clear(e);
    return spill;
fail:
    if (!PyErr_Occurred())
        PyErr_NoMemory();
    PyMem_Free(idx);
    PyMem_Free(spilled);
    Py_XDECREF(spill);
    acts_clear(e);
    return NULL;
}

/* What was decided is done (no connection left behind), then the error raised. */
PyObject *exec_then_fail(Engine *e)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *spill = exec_acts(e);
    Py_XDECREF(spill);
    PyErr_Restore(type, value, tb);
    return NULL;
}

/* ------------------------------------------------------------ the hot-path calls */
/* on_listener(): the loop's reader for epfd (the listeners).  Accepts while the
 * workers have room (at most ACCEPT_BATCH per wake-up, listeners in turn),
 * hands out, and tells Python only what it must hear (notify). */
PyObject *Engine_on_listener(Engine *e, PyObject *unused)
{
    int err = 0, n = 0;
    if (check_hooks(e) < 0)
        return NULL;
    e->lnext = e->nl ? (e->lnext + 1) % e->nl : 0;  /* listeners in turn: none starves */
    for (Py_ssize_t k = 0; k < e->nl && !err; k++) {
        Py_ssize_t i = (e->lnext + k) % e->nl;
        int lfd = e->lfds[i], key = e->lkeys[i];
        while (n < ACCEPT_BATCH && e->accepting && rr_capacity(&e->rr, key) > 0) {
            int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            n++;
            if (fd < 0) {
                if (errno == ECONNABORTED || errno == EPROTO)
                    continue;  /* the client gave up before we accepted */
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    err = errno;
                break;
            }
            long long before = rr_waiting(&e->rr);
            if (rr_distribute(&e->rr, (Conn){NULL, fd, key}) < 0) {
                if (rr_waiting(&e->rr) == before)
                    close(fd);
                return exec_then_fail(e);
            }
        }
    }
    PyObject *spill = exec_acts(e);
    if (spill == NULL || notify(e, spill, err) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyObject *Engine_ack_many(Engine *e, PyObject *args)
{
    long long worker;
    PyObject *seqs;
    int accepted;
    if (!PyArg_ParseTuple(args, "LO!p", &worker, &PyTuple_Type, &seqs, &accepted))
        return NULL;
    PyObject *error = NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seqs) && error == NULL; i++) {
        long long seq = PyLong_AsLongLong(PyTuple_GET_ITEM(seqs, i));
        int status = seq == -1 && PyErr_Occurred() ? -1 : rr_ack(&e->rr, worker, seq, accepted);
        if (status < 0)
            return exec_then_fail(e);
        if (status == 1)
            error = PyUnicode_FromFormat("ack for seq %lld, which worker %lld does not hold", seq, worker);
    }
    PyObject *spill = exec_acts(e);
    if (spill == NULL) {
        Py_XDECREF(error);
        return NULL;
    }
    if (sync_interest(e) < 0) {
        Py_DECREF(spill);
        Py_XDECREF(error);
        return NULL;
    }
    return Py_BuildValue("(NN)", spill, error ? error : Py_NewRef(Py_None));
}
