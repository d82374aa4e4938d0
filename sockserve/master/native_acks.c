/* Reading a worker's channel in C: well-formed Ack records are done here (the
 * policy's ack, close, the next hand-offs); any other record goes back to the
 * Python channel untouched, in order.  Only canonical acks, as protocol.encode
 * writes them (b'\x06[[1,2],true]'), whose seqs the worker all holds, once each,
 * are taken: anything else is the reference path's to judge (protocol.decode,
 * the peer's state table, the pool's fault handling). */
#include "native.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_RECORD (64 * 1024) /* protocol.MAX_RECORD */
#define ACK_CODE 6             /* protocol.Ack.code */

static int parse_seq(const char **p, const char *end, long long *out)
{
    const char *s = *p;
    unsigned long long v = 0;
    int digits = 0;
    while (s < end && *s >= '0' && *s <= '9' && digits < 19) {
        v = v * 10 + (unsigned long long)(*s++ - '0');
        digits++;
    }
    if (digits == 0 || (digits > 1 && **p == '0') || (s < end && *s >= '0' && *s <= '9') ||
        v >= (1ULL << 63))
        return -1;
    *p = s;
    *out = (long long)v;
    return 0;
}

/* b'\x06[[s1,...,sn],true|false]' with 1 <= n <= MAX_FDS; 0, or -1 if not exactly that. */
static int parse_ack(const char *p, Py_ssize_t len, long long *seqs, int *n, int *accepted)
{
    const char *end = p + len;
    if (len < 4 || p[0] != ACK_CODE || p[1] != '[' || p[2] != '[')
        return -1;
    p += 3;
    for (*n = 0;;) {
        if (*n == MAX_FDS || parse_seq(&p, end, &seqs[(*n)++]) < 0 || p >= end)
            return -1;
        if (*p == ']')
            break;
        if (*p++ != ',')
            return -1;
    }
    p++;
    if (end - p == 6 && memcmp(p, ",true]", 6) == 0)
        *accepted = 1;
    else if (end - p == 7 && memcmp(p, ",false]", 7) == 0)
        *accepted = 0;
    else
        return -1;
    return 0;
}

/* 1 if ``worker`` holds every seq, each once. */
static int all_held(Engine *e, long long worker, const long long *seqs, int n)
{
    Worker *w = rr_worker(&e->rr, worker);
    for (int i = 0; w != NULL && i < n; i++) {
        int held = 0;
        for (int k = 0; k < w->n && !held; k++)
            held = w->flights[k].seq == seqs[i];
        for (int j = 0; j < i && held; j++)
            held = seqs[j] != seqs[i];
        if (!held)
            return 0;
    }
    return w != NULL;
}

static PyObject *record_object(const char *data, ssize_t size, struct msghdr *msg)
{
    PyObject *fds = PyList_New(0);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); fds != NULL && c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfds && fds != NULL; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            PyObject *num = PyLong_FromLong(fd);
            if (num == NULL || PyList_Append(fds, num) < 0)
                Py_CLEAR(fds);
            Py_XDECREF(num);
        }
    }
    if (fds == NULL)
        return NULL;
    return Py_BuildValue("(y#Ni)", data, (Py_ssize_t)size, fds, msg->msg_flags);
}

enum { READ_AGAIN, READ_EMPTY, READ_EOF, READ_OTHER };

/* Reads one record: a fast ack is done (counted in acc/rej); any other record
 * is returned in *record.  READ_EMPTY: nothing to read; READ_EOF: EOF or an
 * error, nothing consumed (the channel reads it again and closes). */
static int read_one(Engine *e, long long worker, int fd, long *acc, long *rej, PyObject **record)
{
    union { char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)]; struct cmsghdr align; } control;
    struct iovec iov = {e->rbuf, MAX_RECORD + 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    ssize_t size;
    do
        size = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (size < 0 && errno == EINTR);
    if (size < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return READ_EMPTY;
    if (size <= 0 && (size < 0 || msg.msg_controllen == 0))
        return READ_EOF;
    long long seqs[MAX_FDS];
    int n, accepted;
    if (msg.msg_controllen != 0 || msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC) ||
        parse_ack(e->rbuf, size, seqs, &n, &accepted) < 0 || !all_held(e, worker, seqs, n)) {
        *record = record_object(e->rbuf, size, &msg);
        return *record == NULL ? -1 : READ_OTHER;
    }
    for (int i = 0; i < n; i++)
        if (rr_ack(&e->rr, worker, seqs[i], accepted) < 0)
            return -1;
    *(accepted ? acc : rej) += n;
    return READ_AGAIN;
}

/* Does what was decided, counts the acks on the worker's counters, refreshes its
 * last_seen (as the pool does for any record), tells Python what it must do. */
static int flush(Engine *e, long long worker, long *acc, long *rej, int *count)
{
    PyObject *spill = exec_acts(e);
    if (spill == NULL)
        return -1;
    Attached *at = attached(e, worker);
    if (at != NULL && (counter_add(at->counters, str_accepted, *acc) < 0 ||
                       counter_add(at->counters, str_rejected, *rej) < 0)) {
        Py_DECREF(spill);
        return -1;
    }
    *acc = *rej = 0;
    if (at != NULL && *count) {
        PyObject *now = PyObject_CallNoArgs(e->time_fn);
        int bad = now == NULL || PyObject_SetAttr(at->handle, str_last_seen, now) < 0;
        Py_XDECREF(now);
        if (bad) {
            Py_DECREF(spill);
            return -1;
        }
    }
    *count = 0;
    return notify(e, spill, 0);
}

/* on_channel(worker): the loop's reader for a listening worker's channel.
 * Acks are done here; any other record, EOF, an error, or a worker being
 * replaced goes to the Python hook: on_channel_hook(worker, record, state),
 * state 1 deliver ``record``, 2 read (EOF/error), 3 read as the channel does. */
PyObject *Engine_on_channel(Engine *e, PyObject *arg)
{
    long long worker = PyLong_AsLongLong(arg);
    if ((worker == -1 && PyErr_Occurred()) || check_hooks(e) < 0)
        return NULL;
    if (e->rbuf == NULL && (e->rbuf = PyMem_Malloc(MAX_RECORD + 1)) == NULL)
        return PyErr_NoMemory();
    if (e->reading)  /* a hook reentered: the channel's own reading */
        return call_channel_hook(e, worker, Py_None, 3);
    long acc = 0, rej = 0;
    int count = 0, status = READ_AGAIN;
    e->reading = 1;
    for (int budget = 64; budget > 0 && status != READ_EMPTY; budget--) {
        Attached *at = attached(e, worker);
        int use = at == NULL ? USE_CLOSED : attached_state(at);
        if (use != USE_OK) {
            e->reading = 0;
            if (use < 0 || flush(e, worker, &acc, &rej, &count) < 0)
                return NULL;
            return use == USE_FAULT ? call_channel_hook(e, worker, Py_None, 3) : Py_NewRef(Py_None);
        }
        PyObject *record = NULL;
        status = read_one(e, worker, at->fd, &acc, &rej, &record);
        count += status == READ_AGAIN || status == READ_OTHER;
        if (status < 0) {
            e->reading = 0;
            return exec_then_fail(e);
        }
        if (status == READ_OTHER || status == READ_EOF) {
            e->reading = 0;
            PyObject *r = flush(e, worker, &acc, &rej, &count) < 0 ? NULL
                          : call_channel_hook(e, worker, record ? record : Py_None, record ? 1 : 2);
            Py_XDECREF(record);
            if (r == NULL || status == READ_EOF)
                return r;
            Py_DECREF(r);
            e->reading = 1;
        }
    }
    e->reading = 0;
    if (flush(e, worker, &acc, &rej, &count) < 0)
        return NULL;
    Py_RETURN_NONE;
}
