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
 *
 * xxh3_128 is XXH3-128 (the vendored xxHash, _xxhash/xxhash.h), the digest the xxhash
 * package gives; hash_file() maps such records (or a plain range) read-only, checks
 * their chunk headers and hashes their data into one, all with the GIL released once,
 * where hashing each data piece from Python would take and give back the GIL for every
 * chunk of every record.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <pythread.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
/* xxhash.h inline, and the loop for the CPU's widest vectors (SSE2, AVX2, AVX-512)
 * chosen at run time, as the xxhash package builds it */
#include "_xxhash/xxh_x86dispatch.c"
#include "_xxhash/xxh_x86dispatch.h"
#else
#define XXH_INLINE_ALL
#include "_xxhash/xxhash.h"
#endif

#define MAX_CHUNKS 320      /* a record of 16 MiB - 1 (a 24-bit TRANSFER LENGTH) has 257 */
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


/* Updates below this size keep the GIL: handing it over costs more than the hashing. */
#define HASH_GIL_MIN 4096

typedef struct {
    PyObject_HEAD
    XXH3_state_t *state;
    PyThread_type_lock lock;   /* one update at a time, as hashlib's objects have */
} Hasher;

static PyTypeObject HasherType;

static PyObject *hasher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (!_PyArg_NoKeywords("xxh3_128", kwds) || !PyArg_ParseTuple(args, ":xxh3_128"))
        return NULL;
    Hasher *h = (Hasher *)type->tp_alloc(type, 0);
    if (h == NULL)
        return NULL;
    h->state = XXH3_createState();
    h->lock = PyThread_allocate_lock();
    if (h->state == NULL || h->lock == NULL) {
        Py_DECREF(h);
        return PyErr_NoMemory();
    }
    XXH3_128bits_reset(h->state);
    return (PyObject *)h;
}

static void hasher_dealloc(Hasher *h)
{
    if (h->state)
        XXH3_freeState(h->state);
    if (h->lock)
        PyThread_free_lock(h->lock);
    Py_TYPE(h)->tp_free((PyObject *)h);
}

static void hasher_lock(Hasher *h)
{
    if (!PyThread_acquire_lock(h->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(h->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static PyObject *hasher_update(Hasher *h, PyObject *arg)
{
    Py_buffer buf;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    hasher_lock(h);
    if (buf.len >= HASH_GIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        XXH3_128bits_update(h->state, buf.buf, (size_t)buf.len);
        Py_END_ALLOW_THREADS
    } else {
        XXH3_128bits_update(h->state, buf.buf, (size_t)buf.len);
    }
    PyThread_release_lock(h->lock);
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
}

static PyObject *hasher_digest(Hasher *h, PyObject *unused)
{
    XXH128_canonical_t out;
    hasher_lock(h);
    XXH128_canonicalFromHash(&out, XXH3_128bits_digest(h->state));
    PyThread_release_lock(h->lock);
    return PyBytes_FromStringAndSize((const char *)out.digest, sizeof(out.digest));
}

static PyObject *hasher_hexdigest(Hasher *h, PyObject *unused)
{
    PyObject *raw = hasher_digest(h, NULL);
    if (raw == NULL)
        return NULL;
    PyObject *hex = PyObject_CallMethod(raw, "hex", NULL);
    Py_DECREF(raw);
    return hex;
}

static PyMethodDef hasher_methods[] = {
    {"update", (PyCFunction)hasher_update, METH_O,
     "update(data) -> None\n\nHash the bytes-like ``data`` after what came before."},
    {"digest", (PyCFunction)hasher_digest, METH_NOARGS,
     "digest() -> bytes\n\nThe 16-byte XXH3-128 digest so far, canonical (big-endian)."},
    {"hexdigest", (PyCFunction)hasher_hexdigest, METH_NOARGS,
     "hexdigest() -> str\n\n:meth:`digest` in hexadecimal."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HasherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lio_xcopy.devices._filecopy.xxh3_128",
    .tp_basicsize = sizeof(Hasher),
    .tp_dealloc = (destructor)hasher_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "xxh3_128() -> an XXH3-128 hash, as xxhash.xxh3_128() (update, digest).",
    .tp_methods = hasher_methods,
    .tp_new = hasher_new,
};

/* The first chunk in `count` records at `p` (chunks of `hlen` header bytes, then
 * lengths[j] data bytes) whose header masked by `mask` is not `expect`, or -1. */
static long long mismatch(const unsigned char *p, size_t hlen, const size_t *lengths,
                          Py_ssize_t k, long long count, const unsigned char *expect,
                          const unsigned char *mask)
{
    for (long long i = 0; i < count; i++)
        for (Py_ssize_t j = 0; j < k; j++) {
            const unsigned char *e = expect + (size_t)j * hlen, *m = mask + (size_t)j * hlen;
            for (size_t b = 0; b < hlen; b++)
                if ((p[b] & m[b]) != e[b])
                    return i * k + j;
            p += hlen + lengths[j];
        }
    return -1;
}

/* The arguments hash_file and hash_mapped share, checked: the layout of `count`
 * records (chunk headers `hlen` bytes, data lengths[j]) and the headers they must have. */
struct layout {
    long long hlen, count;
    size_t lengths[MAX_CHUNKS];
    Py_ssize_t k;
    size_t size;           /* bytes in the file, headers and all */
    Py_buffer expect, mask;
};

static int parse_layout(struct layout *l, long long offset, PyObject *lengths_obj)
{
    if (parse_lengths(lengths_obj, l->lengths, &l->k) < 0)
        return -1;
    size_t per = 0;
    for (Py_ssize_t j = 0; j < l->k; j++)
        per += (size_t)l->hlen + l->lengths[j];
    if (offset < 0 || l->hlen < 0 || l->hlen > 64 || l->count < 0
        || l->expect.len != l->mask.len
        || (l->expect.len && l->expect.len != l->k * l->hlen)
        || (l->count && per > (size_t)(INT64_MAX - offset) / (size_t)l->count)) {
        PyErr_SetString(PyExc_ValueError, "hash: bad layout");
        return -1;
    }
    l->size = per * (size_t)l->count;
    return 0;
}

/* Check the headers of the records at `p`, then hash their data: the first chunk whose
 * header differs (nothing hashed), or -1 once hashed. No GIL needed. */
static long long hash_records(Hasher *h, const unsigned char *p, const struct layout *l)
{
    if (l->expect.len) {
        long long bad = mismatch(p, (size_t)l->hlen, l->lengths, l->k, l->count,
                                 l->expect.buf, l->mask.buf);
        if (bad >= 0)
            return bad;
    }
    for (long long i = 0; i < l->count; i++)
        for (Py_ssize_t j = 0; j < l->k; j++) {
            p += l->hlen;
            XXH3_128bits_update(h->state, p, l->lengths[j]);
            p += l->lengths[j];
        }
    return -1;
}

static PyObject *hash_file(PyObject *self, PyObject *args)
{
    Hasher *h;
    int fd;
    long long offset;
    PyObject *lengths_obj;
    struct layout l;
    if (!PyArg_ParseTuple(args, "O!iLLOLy*y*", &HasherType, &h, &fd, &offset, &l.hlen,
                          &lengths_obj, &l.count, &l.expect, &l.mask))
        return NULL;
    PyObject *result = NULL;
    if (parse_layout(&l, offset, lengths_obj) < 0)
        goto out;
    if (l.size == 0) {
        result = PyLong_FromLong(-1);
        goto out;
    }
    long page = sysconf(_SC_PAGESIZE);
    int64_t base = offset - offset % page;
    size_t span = l.size + (size_t)(offset - base);
    long long bad = -1;
    int err = 0;
    hasher_lock(h);
    Py_BEGIN_ALLOW_THREADS
    unsigned char *m = mmap(NULL, span, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, base);
    if (m == MAP_FAILED) {
        err = errno;
    } else {
        bad = hash_records(h, m + (offset - base), &l);
        munmap(m, span);
    }
    Py_END_ALLOW_THREADS
    PyThread_release_lock(h->lock);
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    result = PyLong_FromLongLong(bad);
out:
    PyBuffer_Release(&l.expect);
    PyBuffer_Release(&l.mask);
    return result;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22   /* Linux 5.14 */
#endif

static PyObject *hash_mapped(PyObject *self, PyObject *args)
{
    Hasher *h;
    Py_buffer map;
    long long offset;
    PyObject *lengths_obj;
    struct layout l;
    if (!PyArg_ParseTuple(args, "O!y*LLOLy*y*", &HasherType, &h, &map, &offset, &l.hlen,
                          &lengths_obj, &l.count, &l.expect, &l.mask))
        return NULL;
    PyObject *result = NULL;
    if (parse_layout(&l, offset, lengths_obj) < 0)
        goto out;
    if ((size_t)offset > (size_t)map.len || l.size > (size_t)map.len - (size_t)offset) {
        PyErr_SetString(PyExc_ValueError, "hash_mapped: the records lie past the mapping");
        goto out;
    }
    long long bad = -1;
    if (l.size) {
        long page = sysconf(_SC_PAGESIZE);
        unsigned char *start = (unsigned char *)map.buf + offset;
        unsigned char *a = (unsigned char *)((uintptr_t)start - (uintptr_t)start % page);
        size_t n = l.size + (size_t)(start - a);
        hasher_lock(h);
        Py_BEGIN_ALLOW_THREADS
        madvise(a, n, MADV_POPULATE_READ);  /* one call maps them all; else they fault */
        bad = hash_records(h, start, &l);
        madvise(a, n, MADV_DONTNEED);       /* the page cache keeps them, we do not */
        Py_END_ALLOW_THREADS
        PyThread_release_lock(h->lock);
    }
    result = PyLong_FromLongLong(bad);
out:
    PyBuffer_Release(&map);
    PyBuffer_Release(&l.expect);
    PyBuffer_Release(&l.mask);
    return result;
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
    {"hash_file", hash_file, METH_VARARGS,
     "hash_file(hasher, fd, offset, header_len, lengths, count, expect, mask) -> int\n\n"
     "Hash into the xxh3_128 ``hasher`` the data of ``count`` records at ``offset`` of\n"
     "``fd`` (each chunk ``header_len`` bytes of header, then ``lengths[j]`` of data;\n"
     "header_len 0 and one length: a plain range), mapped read-only. With ``expect``\n"
     "(and ``mask``, of the same size: a header for each chunk of a record) every\n"
     "header masked must equal its ``expect`` first: else nothing is hashed and the\n"
     "result is the index of the first chunk that differs; -1 once hashed. OSError\n"
     "when the file cannot be mapped."},
    {"hash_mapped", hash_mapped, METH_VARARGS,
     "hash_mapped(hasher, mapping, offset, header_len, lengths, count, expect, mask) -> int\n\n"
     "``hash_file`` of records at ``offset`` of ``mapping`` (a read-only mapping of the\n"
     "whole file, kept): their pages are mapped in one call and let go after (the page\n"
     "cache keeps them), with no mmap or munmap, which serialize a process's threads."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_filecopy",
    "Records laid into a file with their data copied by the kernel.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__filecopy(void)
{
    if (PyType_Ready(&HasherType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&HasherType);
    if (PyModule_AddObject(m, "xxh3_128", (PyObject *)&HasherType) < 0) {
        Py_DECREF(&HasherType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
