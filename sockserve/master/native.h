/* Shared by _native.c (the Python type, the policy API) and native_io.c (the hot path). */
#ifndef SOCKSERVE_NATIVE_H
#define SOCKSERVE_NATIVE_H

#include "rr_core.h"

#define MAX_FDS 8 /* protocol.MAX_FDS: fds in one NewConn record */

/* A worker whose channel the hot path may send on directly. */
typedef struct { long long id; int fd; PyObject *channel; PyObject *counters; } Attached;
/* A listener key and its NewConn record up to the first seq: b'\x05["key",[' */
typedef struct { PyObject *key; char *prefix; Py_ssize_t prefix_len; } Key;

typedef struct {
    PyObject_HEAD
    RR rr;
    Attached *att; Py_ssize_t natt, capatt;
    Key *keys; Py_ssize_t nkeys, capkeys;
} Engine;

extern PyObject *HandoffType, *ReleaseType, *ProtocolErrorType;
extern PyObject *str_closed, *str_pending, *str_handed, *str_rehanded;

PyObject *conn_object(Engine *e, Conn *c);
PyObject *act_object(Engine *e, Act *a);
void acts_clear(Engine *e);

PyObject *Engine_key(Engine *e, PyObject *args);
PyObject *Engine_attach(Engine *e, PyObject *args);
PyObject *Engine_detach(Engine *e, PyObject *arg);
PyObject *Engine_accept(Engine *e, PyObject *args);
PyObject *Engine_ack_many(Engine *e, PyObject *args);

#endif
