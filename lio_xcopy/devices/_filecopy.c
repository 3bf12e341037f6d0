/*
 * Records laid into a file with their data copied by the kernel from another file, and
 * their data copied back out, with the GIL released: the loops of
 * lio_xcopy.devices.filecopy.interleave and deinterleave.
 *
 * interleave() writes `count` records at `dst_off` of `dst_fd`: for record i, chunk j a
 * header (the j-th of `first` for the first record, of `rest` for the others) and then
 * `lengths[j]` data bytes copied from `src_fd`, whose bytes are taken in order from
 * `src_off` on. Large data pieces move with copy_file_range(2); headers and small
 * pieces are gathered in a small buffer and written with one pwrite each time a large
 * piece comes, so a record costs about two system calls. It raises OSError on the first
 * failure (the caller cuts the file back); the file positions never move.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define MAX_CHUNKS 64
#define SMALL 512          /* data pieces below this go through the gather buffer */
#define GATHER 8192

struct gather {
    unsigned char buf[GATHER];
    size_t len;
    int64_t at;            /* file offset of buf[0] */
};

static int full_pwrite(int fd, const unsigned char *p, size_t n, int64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

static int flush(struct gather *g, int fd)
{
    if (g->len && full_pwrite(fd, g->buf, g->len, g->at) < 0)
        return -1;
    g->at += (int64_t)g->len;
    g->len = 0;
    return 0;
}

static int full_pread(int fd, unsigned char *p, size_t n, int64_t off)
{
    while (n) {
        ssize_t r = pread(fd, p, n, off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO;  /* the source ended first */
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

static int kernel_copy(int src, int64_t src_off, int dst, int64_t dst_off, size_t n)
{
    while (n) {
        loff_t in = src_off, out = dst_off;
        ssize_t c = copy_file_range(src, &in, dst, &out, n, 0);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (c == 0) {
            errno = EIO;
            return -1;
        }
        src_off += c;
        dst_off += c;
        n -= (size_t)c;
    }
    return 0;
}

static int parse_lengths(PyObject *obj, size_t *lengths, Py_ssize_t *k)
{
    *k = PySequence_Check(obj) ? PySequence_Size(obj) : -1;
    if (*k <= 0 || *k > MAX_CHUNKS) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "bad chunk lengths");
        return -1;
    }
    for (Py_ssize_t j = 0; j < *k; j++) {
        PyObject *item = PySequence_GetItem(obj, j);
        if (item == NULL)
            return -1;
        long long v = PyLong_AsLongLong(item);
        Py_DECREF(item);
        if (v < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "negative chunk length");
            return -1;
        }
        lengths[j] = (size_t)v;
    }
    return 0;
}

static PyObject *interleave(PyObject *self, PyObject *args)
{
    int src, dst;
    long long src_off, dst_off, count;
    Py_buffer first, rest;
    PyObject *lengths_obj;
    if (!PyArg_ParseTuple(args, "iLiLy*y*OL", &src, &src_off, &dst, &dst_off, &first, &rest,
                          &lengths_obj, &count))
        return NULL;
    PyObject *result = NULL;
    size_t lengths[MAX_CHUNKS];
    Py_ssize_t k;
    if (parse_lengths(lengths_obj, lengths, &k) < 0)
        goto out;
    if (first.len != rest.len || first.len % k || first.len / k > 64 || count < 0
        || src_off < 0 || dst_off < 0) {
        PyErr_SetString(PyExc_ValueError, "interleave: bad layout");
        goto out;
    }
    size_t hlen = (size_t)(first.len / k);
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    struct gather g;
    g.len = 0;
    g.at = dst_off;
    int64_t in = src_off;
    for (long long i = 0; i < count && !err; i++) {
        const unsigned char *heads = i ? rest.buf : first.buf;
        for (Py_ssize_t j = 0; j < k && !err; j++) {
            size_t n = lengths[j];
            if (g.len + hlen + SMALL > GATHER && flush(&g, dst) < 0) {
                err = errno;
                break;
            }
            memcpy(g.buf + g.len, heads + (size_t)j * hlen, hlen);
            g.len += hlen;
            if (n < SMALL) {
                if (n && full_pread(src, g.buf + g.len, n, in) < 0) {
                    err = errno;
                    break;
                }
                g.len += n;
            } else {
                int64_t at = g.at + (int64_t)g.len;
                if (flush(&g, dst) < 0 || kernel_copy(src, in, dst, at, n) < 0) {
                    err = errno;
                    break;
                }
                g.at = at + (int64_t)n;
            }
            in += (int64_t)n;
        }
    }
    if (!err && flush(&g, dst) < 0)
        err = errno;
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    result = Py_None;
    Py_INCREF(result);
out:
    PyBuffer_Release(&first);
    PyBuffer_Release(&rest);
    return result;
}

static PyObject *deinterleave(PyObject *self, PyObject *args)
{
    int src, dst;
    long long src_off, dst_off, count, hlen;
    PyObject *lengths_obj;
    if (!PyArg_ParseTuple(args, "iLiLLOL", &src, &src_off, &dst, &dst_off, &hlen, &lengths_obj,
                          &count))
        return NULL;
    size_t lengths[MAX_CHUNKS];
    Py_ssize_t k;
    if (parse_lengths(lengths_obj, lengths, &k) < 0)
        return NULL;
    if (count < 0 || hlen < 0 || src_off < 0 || dst_off < 0) {
        PyErr_SetString(PyExc_ValueError, "deinterleave: bad layout");
        return NULL;
    }
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    int64_t in = src_off, out = dst_off;
    for (long long i = 0; i < count && !err; i++) {
        for (Py_ssize_t j = 0; j < k; j++) {
            in += hlen;
            if (lengths[j] && kernel_copy(src, in, dst, out, lengths[j]) < 0) {
                err = errno;
                break;
            }
            in += (int64_t)lengths[j];
            out += (int64_t)lengths[j];
        }
    }
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"interleave", interleave, METH_VARARGS,
     "interleave(src_fd, src_off, dst_fd, dst_off, first, rest, lengths, count) -> None\n\n"
     "Write ``count`` records at ``dst_off``: per chunk a header (of ``first`` for the\n"
     "first record, of ``rest`` after it) and ``lengths[j]`` bytes of ``src_fd`` taken\n"
     "in order from ``src_off``, copied by the kernel. OSError on a failure."},
    {"deinterleave", deinterleave, METH_VARARGS,
     "deinterleave(src_fd, src_off, dst_fd, dst_off, header_len, lengths, count) -> None\n\n"
     "The data of ``count`` records laid out by ``interleave`` at ``src_off`` (each chunk\n"
     "``header_len`` bytes of header, then ``lengths[j]`` of data), copied one after the\n"
     "other to ``dst_off`` by the kernel. OSError on a failure."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_filecopy",
    "Records laid into a file with their data copied by the kernel.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__filecopy(void) { return PyModule_Create(&module); }
