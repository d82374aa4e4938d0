/* Shared by _native.c (the Python type, the policy API) and native_io.c (the hot path). */
#ifndef SOCKSERVE_NATIVE_H
#define SOCKSERVE_NATIVE_H

#include "rr_core.h"

#define MAX_FDS 8 /* protocol.MAX_FDS: fds in one NewConn record */

/* A worker whose channel the hot path may send on directly. */
typedef struct { long long id; int fd; PyObject *channel, *counters, *handle; } Attached;
enum { USE_OK = 1, USE_CLOSED = 0, USE_FAULT = 2 };  /* attached_state; -1 error */
/* A listener key and its NewConn record up to the first seq: b'\x05["key",[' */
typedef struct { PyObject *key; char *prefix; Py_ssize_t prefix_len; } Key;

typedef struct {
    PyObject_HEAD
    RR rr;
    Attached *att; Py_ssize_t natt, capatt;
    Key *keys; Py_ssize_t nkeys, capkeys;
    char *rbuf;        /* one record, for on_channel */
    int reading;       /* on_channel is running (a hook may reenter) */
    int epfd;          /* the listeners' own epoll set; the loop watches this one fd */
    int *lfds; int *lkeys; Py_ssize_t nl, capl, lnext;  /* listeners, their key index; next first */
    char *lint;        /* per listener: EPOLLIN on in epfd (accepting, its key's rotation has room) */
    int accepting;     /* Python's say (accepting, not paused) */
    PyObject *on_event, *on_channel_hook, *time_fn;  /* hooks(): Python's side */
} Engine;

extern PyObject *HandoffType, *ReleaseType, *ProtocolErrorType;
extern PyObject *str_default_key, *str_closed, *str_pending, *str_handed, *str_rehanded, *str_accepted, *str_rejected,
    *str_last_seen, *str_fault;

PyObject *conn_object(Engine *e, Conn *c);
PyObject *act_object(Engine *e, Act *a);
void acts_clear(Engine *e);

PyObject *Engine_key(Engine *e, PyObject *args);
/* The index of key ``obj`` in the key table; -2 unknown (and not ``create``d), -3 error. */
int key_index(Engine *e, PyObject *obj, int create);
PyObject *Engine_unlisten(Engine *e, PyObject *arg);
PyObject *Engine_attach(Engine *e, PyObject *args);
PyObject *Engine_detach(Engine *e, PyObject *arg);
PyObject *Engine_hooks(Engine *e, PyObject *args);
PyObject *Engine_on_listener(Engine *e, PyObject *unused);
PyObject *Engine_listen(Engine *e, PyObject *args);
PyObject *Engine_set_accepting(Engine *e, PyObject *arg);
int sync_interest(Engine *e);
PyObject *Engine_ack_many(Engine *e, PyObject *args);
PyObject *Engine_on_channel(Engine *e, PyObject *arg);

/* native_io.c, for native_acks.c */
Attached *attached(Engine *e, long long worker);
int counter_add(PyObject *counters, PyObject *name, long n);
PyObject *exec_acts(Engine *e);
PyObject *exec_then_fail(Engine *e);
int notify(Engine *e, PyObject *spill, int err);
int check_hooks(Engine *e);
int attached_state(Attached *a);
PyObject *call_channel_hook(Engine *e, long long worker, PyObject *record, int state);

#endif
