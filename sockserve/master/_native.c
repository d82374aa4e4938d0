/* sockserve.master._native: the rr policy (rr_core.c) as a Python type, plus the
 * master's hot path in C: accept4 -> policy -> sendmsg(NewConn + SCM_RIGHTS) ->
 * close on ack.  Loaded through native.py; round_robin.py is the fallback and
 * the reference.
 *
 * RoundRobin(window) has round_robin.RoundRobin's API (add, stop, remove, forget,
 * distribute, ack, capacity, waiting, drain_queue; one rotation per key; actions as
 * Handoff/Release objects), and:
 *   key(key, prefix) -> int        a listener key and its NewConn record prefix (the
 *                                  policy API's keys share this table, by equality)
 *   listen(fd, key) / unlisten(fd) a listener polled in the engine's epoll set, or no more
 *   attach(worker, channel, counters) / detach(worker)
 *   accept(listen_fd, key, limit) -> (spill, errno)
 *   ack_many(worker, seqs, accepted) -> (spill, error message or None)
 * The hot-path calls do the policy's actions themselves: close the master's copy
 * on Release, sendmsg each worker's hand-offs as NewConn records of up to 8 fds
 * straight on its channel's socket.  What they cannot do there (the channel has
 * records queued, is closed, or the send fails) comes back in ``spill`` as
 * Handoff/Release objects, for the Python path (Channel.send queues and retries).
 */
#include <Python.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "native.h"

PyObject *HandoffType, *ReleaseType, *ProtocolErrorType; /* set by configure() */
PyObject *str_default_key, *str_closed, *str_pending, *str_handed, *str_rehanded, *str_accepted, *str_rejected,
    *str_last_seen, *str_fault;

/* ------------------------------------------------------------ conns and actions as objects */
PyObject *conn_object(Engine *e, Conn *c)
{
    if (c->obj != NULL)
        return Py_NewRef(c->obj);
    return Py_BuildValue("(Oi)", e->keys[c->key].key, c->fd);
}

PyObject *act_object(Engine *e, Act *a)
{
    PyObject *conn = conn_object(e, &a->conn), *out;
    if (conn == NULL)
        return NULL;
    if (a->kind == ACT_HANDOFF)
        out = PyObject_CallFunction(HandoffType, "LLOO", a->worker, a->seq, conn,
                                    a->rehand ? Py_True : Py_False);
    else
        out = PyObject_CallOneArg(ReleaseType, conn);
    Py_DECREF(conn);
    return out;
}

/* Drops the references the pending acts own (a Release owns its conn's). */
void acts_clear(Engine *e)
{
    for (Py_ssize_t i = 0; i < e->rr.nacts; i++)
        if (e->rr.acts[i].kind == ACT_RELEASE)
            Py_XDECREF(e->rr.acts[i].conn.obj);
    e->rr.nacts = 0;
}

/* The pending acts as a list of Handoff/Release (the policy API). */
static PyObject *acts_list(Engine *e, int status)
{
    PyObject *list = status < 0 ? NULL : PyList_New(0);
    for (Py_ssize_t i = 0; list != NULL && i < e->rr.nacts; i++) {
        PyObject *item = act_object(e, &e->rr.acts[i]);
        if (item == NULL || PyList_Append(list, item) < 0)
            Py_CLEAR(list);
        Py_XDECREF(item);
    }
    acts_clear(e);
    if (list != NULL && sync_interest(e) < 0)
        Py_CLEAR(list);
    return list;
}

static int check_ready(void)
{
    if (HandoffType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_native.configure() was not called");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ type basics */
static void visit_conn(Conn *c, void *arg)
{
    if (arg == NULL)
        Py_CLEAR(c->obj);
}

typedef struct { visitproc visit; void *arg; int ret; } VisitArg;

static void traverse_conn(Conn *c, void *arg)
{
    VisitArg *va = arg;
    if (va->ret == 0 && c->obj != NULL)
        va->ret = va->visit(c->obj, va->arg);
}

static int Engine_traverse(Engine *e, visitproc visit, void *arg)
{
    VisitArg va = {visit, arg, 0};
    rr_visit_conns(&e->rr, traverse_conn, &va);
    if (va.ret)
        return va.ret;
    for (Py_ssize_t i = 0; i < e->natt; i++) {
        Py_VISIT(e->att[i].channel);
        Py_VISIT(e->att[i].counters);
        Py_VISIT(e->att[i].handle);
    }
    Py_VISIT(e->on_event);
    Py_VISIT(e->on_channel_hook);
    Py_VISIT(e->time_fn);
    return 0;
}

static int Engine_clear(Engine *e)
{
    acts_clear(e);
    rr_visit_conns(&e->rr, visit_conn, NULL);
    for (Py_ssize_t i = 0; i < e->natt; i++) {
        Py_CLEAR(e->att[i].channel);
        Py_CLEAR(e->att[i].counters);
        Py_CLEAR(e->att[i].handle);
    }
    e->natt = 0;
    Py_CLEAR(e->on_event);
    Py_CLEAR(e->on_channel_hook);
    Py_CLEAR(e->time_fn);
    return 0;
}

static void Engine_dealloc(Engine *e)
{
    PyObject_GC_UnTrack(e);
    Engine_clear(e);
    rr_free(&e->rr);
    PyMem_Free(e->att);
    for (Py_ssize_t i = 0; i < e->nkeys; i++) {
        Py_XDECREF(e->keys[i].key);
        PyMem_Free(e->keys[i].prefix);
    }
    PyMem_Free(e->keys);
    PyMem_Free(e->rbuf);
    PyMem_Free(e->lfds);
    PyMem_Free(e->lkeys);
    PyMem_Free(e->lint);
    if (e->epfd >= 0)
        close(e->epfd);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

/* epfd is -1 from allocation on: tp_alloc zeroes the object, and a dealloc after a failed
   __init__ (bad window) must not close fd 0 (it closed pytest's stdin). */
static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Engine *e = (Engine *)type->tp_alloc(type, 0);
    if (e != NULL)
        e->epfd = -1;
    return (PyObject *)e;
}

static int Engine_init(Engine *e, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"window", NULL};
    int window = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|i", kwlist, &window))
        return -1;
    if (window < 1 || window > 4096) {
        PyErr_Format(PyExc_ValueError, "window must be 1..4096, got %d", window);
        return -1;
    }
    if (e->rr.window) {
        PyErr_SetString(PyExc_RuntimeError, "RoundRobin is initialised once");
        return -1;
    }
    return rr_init(&e->rr, window);
}

/* ------------------------------------------------------------ the policy API */
/* (worker[, key]) -> worker and the key's index; key absent: ``dflt`` (NULL: every key, -1).
 * ``create``: an unknown key gets an index (no NewConn prefix); else it is -2 (no such key). */
static int worker_key(Engine *e, PyObject *args, PyObject *dflt, int create, long long *w, int *key)
{
    PyObject *wobj, *kobj = dflt;
    if (!PyArg_ParseTuple(args, "O|O", &wobj, &kobj) || check_ready() < 0)
        return -1;
    *w = PyLong_AsLongLong(wobj);
    if (*w == -1 && PyErr_Occurred())
        return -1;
    *key = kobj == NULL || kobj == Py_None ? -1 : key_index(e, kobj, create);
    return *key == -3 ? -1 : 0;
}

static PyObject *Engine_add(Engine *e, PyObject *args)
{
    long long w;
    int key;
    if (worker_key(e, args, str_default_key, 1, &w, &key) < 0)
        return NULL;
    return acts_list(e, rr_add(&e->rr, w, key));
}

static PyObject *Engine_stop(Engine *e, PyObject *args)
{
    long long w;
    int key;
    if (worker_key(e, args, NULL, 0, &w, &key) < 0)
        return NULL;
    return acts_list(e, key == -2 ? 0 : rr_stop(&e->rr, w, key));
}

static PyObject *Engine_remove(Engine *e, PyObject *arg)
{
    long long w = PyLong_AsLongLong(arg);
    if ((w == -1 && PyErr_Occurred()) || check_ready() < 0)
        return NULL;
    return acts_list(e, rr_remove(&e->rr, w));
}

static PyObject *Engine_forget(Engine *e, PyObject *kobj)
{
    int key = key_index(e, kobj, 0);
    if (key == -3 || check_ready() < 0)
        return NULL;
    return acts_list(e, key == -2 ? 0 : rr_forget(&e->rr, key));
}

static PyObject *Engine_distribute(Engine *e, PyObject *args)
{
    PyObject *conn, *kobj = str_default_key;
    if (!PyArg_ParseTuple(args, "O|O", &conn, &kobj) || check_ready() < 0)
        return NULL;
    int key = key_index(e, kobj, 1);
    if (key == -3)
        return NULL;
    Conn c = {Py_NewRef(conn), -1, key};
    long long before = rr_waiting(&e->rr);
    int status = rr_distribute(&e->rr, c);
    if (rr_waiting(&e->rr) == before)  /* not queued (out of memory): not ours */
        Py_DECREF(conn);
    return acts_list(e, status);
}

static int ack_error(long long worker, long long seq)
{
    PyErr_Format(ProtocolErrorType, "ack for seq %lld, which worker %lld does not hold", seq, worker);
    return -1;
}

static PyObject *Engine_ack(Engine *e, PyObject *args)
{
    long long w, seq;
    int accepted;
    if (!PyArg_ParseTuple(args, "LLp", &w, &seq, &accepted) || check_ready() < 0)
        return NULL;
    int status = rr_ack(&e->rr, w, seq, accepted);
    if (status == 1)
        return ack_error(w, seq), NULL;
    return acts_list(e, status);
}

/* drain_queue() -> [(conn, key), ...]: what waits for room, oldest first, taken out of the
 * policy (round_robin.RoundRobin.drain_queue); a hot-path conn comes as (key, fd),
 * the fd the caller's now.  For a retired policy (policy_switch.py).  All or nothing:
 * the list is built before anything leaves the queue, so an error loses no fd. */
static PyObject *Engine_drain_queue(Engine *e, PyObject *unused)
{
    RR *rr = &e->rr;
    PyObject *list = PyList_New(rr->qlen);
    for (Py_ssize_t i = 0; list != NULL && i < rr->qlen; i++) {
        Conn *c = &rr->queue[(rr->qhead + i) % rr->qcap].conn;
        PyObject *conn = conn_object(e, c);
        PyObject *item = conn == NULL ? NULL : PyTuple_Pack(2, conn, e->keys[c->key].key);
        Py_XDECREF(conn);
        if (item == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, item);
    }
    if (list == NULL)
        return NULL;
    Conn c;
    while (rr_pop_queued(rr, &c))
        Py_XDECREF(c.obj);  /* the queue's reference; the list holds its own */
    if (sync_interest(e) < 0)
        Py_CLEAR(list);
    return list;
}

static PyObject *Engine_capacity(Engine *e, PyObject *args)
{
    PyObject *kobj = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &kobj))
        return NULL;
    int key = kobj == Py_None ? -1 : key_index(e, kobj, 0);
    if (key == -3)
        return NULL;
    return PyLong_FromLongLong(key == -2 ? 0 : rr_capacity(&e->rr, key));
}

static PyObject *Engine_waiting(Engine *e, PyObject *unused)
{
    return PyLong_FromLongLong(rr_waiting(&e->rr));
}

/* _owner (seq -> worker) and _handed (worker -> count), as round_robin.py keeps them. */
static PyObject *Engine_get_owner(Engine *e, void *closure)
{
    PyObject *d = PyDict_New();
    for (Py_ssize_t i = 0; d != NULL && i < e->rr.nworkers; i++)
        for (int k = 0; k < e->rr.workers[i].n; k++) {
            PyObject *s = PyLong_FromLongLong(e->rr.workers[i].flights[k].seq);
            PyObject *w = PyLong_FromLongLong(e->rr.workers[i].id);
            if (s == NULL || w == NULL || PyDict_SetItem(d, s, w) < 0)
                Py_CLEAR(d);
            Py_XDECREF(s);
            Py_XDECREF(w);
            if (d == NULL)
                return NULL;
        }
    return d;
}

/* {key: {worker: handed}} of the live keys' rotations, as round_robin.py's ``_handed``. */
static PyObject *Engine_get_handed(Engine *e, void *closure)
{
    PyObject *d = PyDict_New();
    for (int k = 0; d != NULL && k < (int)e->rr.nrots; k++) {
        const Rot *rot = rr_rot(&e->rr, k);
        PyObject *inner = rot == NULL ? NULL : PyDict_New();
        if (rot != NULL && (inner == NULL || PyDict_SetItem(d, e->keys[k].key, inner) < 0))
            Py_CLEAR(d);
        for (Py_ssize_t i = 0; d != NULL && rot != NULL && i < rot->n; i++) {
            PyObject *w = PyLong_FromLongLong(rot->m[i].worker);
            PyObject *h = PyLong_FromLongLong(rot->m[i].handed);
            if (w == NULL || h == NULL || PyDict_SetItem(inner, w, h) < 0)
                Py_CLEAR(d);
            Py_XDECREF(w);
            Py_XDECREF(h);
        }
        Py_XDECREF(inner);
    }
    return d;
}

static PyObject *Engine_get_window(Engine *e, void *closure)
{
    return PyLong_FromLong(e->rr.window);
}

static PyMethodDef Engine_methods[] = {
    {"add", (PyCFunction)Engine_add, METH_VARARGS, "add(worker, key=''): it takes key's connections."},
    {"stop", (PyCFunction)Engine_stop, METH_VARARGS, "stop(worker, key=None): no new hand-offs (of key)."},
    {"remove", (PyCFunction)Engine_remove, METH_O, "``worker`` is gone: its un-acked connections are re-handed."},
    {"forget", (PyCFunction)Engine_forget, METH_O, "forget(key): released; its queued conns closed."},
    {"distribute", (PyCFunction)Engine_distribute, METH_VARARGS, "distribute(conn, key=''): queue, hand out."},
    {"ack", (PyCFunction)Engine_ack, METH_VARARGS, "ack(worker, seq, accepted) -> actions."},
    {"drain_queue", (PyCFunction)Engine_drain_queue, METH_NOARGS,
     "drain_queue() -> the queued conns, oldest first, taken out of the policy."},
    {"capacity", (PyCFunction)Engine_capacity, METH_VARARGS, "capacity(key=None): hand-offs it can take."},
    {"waiting", (PyCFunction)Engine_waiting, METH_NOARGS, "Queued plus un-acked connections."},
    {"key", (PyCFunction)Engine_key, METH_VARARGS, "key(key, prefix) -> index for accept()."},
    {"attach", (PyCFunction)Engine_attach, METH_VARARGS, "attach(worker, fd, channel, counters, handle)."},
    {"hooks", (PyCFunction)Engine_hooks, METH_VARARGS, "hooks(on_event, on_channel, time)."},
    {"detach", (PyCFunction)Engine_detach, METH_O, "detach(worker): no direct sends to it."},
    {"listen", (PyCFunction)Engine_listen, METH_VARARGS, "listen(fd, key) -> the epoll fd the loop watches."},
    {"unlisten", (PyCFunction)Engine_unlisten, METH_O, "unlisten(fd): stop polling that listener."},
    {"set_accepting", (PyCFunction)Engine_set_accepting, METH_O, "set_accepting(bool): accept when room."},
    {"on_listener", (PyCFunction)Engine_on_listener, METH_NOARGS, "on_listener(): accept (the loop's reader)."},
    {"ack_many", (PyCFunction)Engine_ack_many, METH_VARARGS,
     "ack_many(worker, seqs, accepted) -> (spill, error or None)."},
    {"on_channel", (PyCFunction)Engine_on_channel, METH_O, "on_channel(worker): read its channel."},
    {NULL},
};

static PyGetSetDef Engine_getset[] = {
    {"_owner", (getter)Engine_get_owner, NULL, "seq -> worker, for tests", NULL},
    {"_handed", (getter)Engine_get_handed, NULL, "worker -> hand-offs, for tests", NULL},
    {"window", (getter)Engine_get_window, NULL, "un-acked hand-offs per worker", NULL},
    {NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sockserve.master._native.RoundRobin",
    .tp_doc = PyDoc_STR("round_robin.RoundRobin in C, with the master's hot path."),
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Engine_new,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_traverse = (traverseproc)Engine_traverse,
    .tp_clear = (inquiry)Engine_clear,
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
};

static PyObject *configure(PyObject *mod, PyObject *args)
{
    PyObject *h, *r, *p;
    if (!PyArg_ParseTuple(args, "OOO", &h, &r, &p))
        return NULL;
    Py_XSETREF(HandoffType, Py_NewRef(h));
    Py_XSETREF(ReleaseType, Py_NewRef(r));
    Py_XSETREF(ProtocolErrorType, Py_NewRef(p));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS, "configure(Handoff, Release, ProtocolError)"},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sockserve.master._native",
    "The rr policy and the master's hand-off hot path in C (see native.py).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    if (PyType_Ready(&EngineType) < 0 ||  /* mode: a class attribute, as in round_robin.py */
        PyDict_SetItemString(EngineType.tp_dict, "mode", PyUnicode_InternFromString("rr")) < 0)
        return NULL;
    if (!(str_default_key = PyUnicode_InternFromString("")) ||
        !(str_closed = PyUnicode_InternFromString("closed")) ||
        !(str_pending = PyUnicode_InternFromString("pending")) ||
        !(str_handed = PyUnicode_InternFromString("handed")) ||
        !(str_rehanded = PyUnicode_InternFromString("rehanded")) ||
        !(str_accepted = PyUnicode_InternFromString("accepted")) ||
        !(str_rejected = PyUnicode_InternFromString("rejected")) ||
        !(str_last_seen = PyUnicode_InternFromString("last_seen")) ||
        !(str_fault = PyUnicode_InternFromString("fault")))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "RoundRobin", (PyObject *)&EngineType) < 0 ||
        PyModule_AddStringConstant(m, "mode", "rr") < 0 ||
        PyModule_AddIntConstant(m, "MAX_FDS", MAX_FDS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
