/*
 * The TCMU ring's direct path for a disk LUN: runs of READ (10/16) and WRITE (10/16)
 * served straight from the ring, with the GIL released.
 *
 * serve() reads CMD entries from the daemon's cursor, moves each one's blocks between
 * the backing file and the data area with one preadv/pwritev (SBC-4 5.13, 5.15, 5.37,
 * 5.39), writes a GOOD response into the next CMD slot at cmd_tail and advances
 * cmd_tail, exactly as lio_xcopy.tcmu.ring.CommandRing.complete does. It stops, leaving
 * the entry unread, at the first one it does not serve in full: a TMR entry, any other
 * opcode (but for the answers below), a field it does not handle (RDPROTECT/WRPROTECT, reserved bits, a group
 * number, a control byte, a transfer length of 0 or above the Block Limits), blocks
 * outside the LUN, a buffer whose length is not the CDB's (residuals), a WRITE the
 * caller did not allow, a failed or short transfer, or anything malformed. The Python
 * path then answers that entry as it answers every command, with the sense data it
 * owes; a READ or WRITE it redoes moves the same bytes again.
 *
 * Both may also be handed answers the Python path gave before (``answers``): a LUN's
 * reports of its own state (TEST UNIT READY, INQUIRY, MODE SENSE, READ CAPACITY, REPORT
 * SUPPORTED OPERATION CODES), held by the caller while nothing has changed that state.
 * An entry whose CDB and buffer length equal one of them gets the same Data-In bytes and
 * the same GOOD response (read_len included), as the Python path would write them again.
 *
 * serve_wait() does the same, and each time the ring is drained it wakes the kernel for
 * the answers written, then waits on the uio fd for more, without returning to Python:
 * a ring of plain READs and WRITEs costs no Python step per wake-up either. It returns
 * at an entry the Python path answers, when the caller's wake fd is readable, or when
 * its time is up, so the caller keeps its own loop (completions, stopping, new terms).
 * Given a kick fd (an eventfd), it asks the thread that reads it for the wake-ups it
 * gives while it serves after READs with another entry queued behind them: the kernel
 * completes answers in the thread that wakes it (for a READ, tcmu_handle_completion
 * copies the data area into the initiator's buffers), so that copy runs beside the next
 * entry's read from the backing file. With nothing queued, it wakes the kernel itself.
 *
 * The layout is struct tcmu_mailbox and struct tcmu_cmd_entry of
 * include/uapi/linux/target_core_user.h (host byte order, as the kernel writes it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#define MB_CMD_HEAD 12
#define MB_CMD_TAIL 64
#define OP_MASK 0x7u
#define OP_PAD 0u
#define OP_CMD 1u
#define HDR_SIZE 8u
#define REQ_IOV_CNT 8u
#define REQ_CDB_OFF 24u
#define IOV_OFF 48u
#define IOV_SIZE 16u
#define RSP_UFLAGS 7u
#define RSP_KFLAGS 6u
#define UFLAG_READ_LEN 0x2u
#define RSP_STATUS 8u
#define RSP_READ_LEN 12u
#define ALIGN 8u
#define MAX_IOV 1024u

/* an answer in ``answers``: this header (host byte order), the CDB, the Data-In bytes */
#define ANS_HDR 16u /* u32 cdb_len, buf_len (the iovecs' total), data_len, read_len */

#define ALLOW_WRITE 0x1
#define DSYNC_WRITES 0x2

/* a wake-up (4 bytes to the uio fd) after this many bytes served, so the kernel reaps
 * long transfers while later ones are still moving */
#define WAKE_EVERY (256u * 1024u)

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

static inline uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline uint32_t be16(const unsigned char *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t be64(const unsigned char *p)
{
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

struct lun {
    int fd;
    uint64_t block_size;
    uint64_t blocks;
    uint64_t max_blocks; /* 0: no limit */
    int flags;
};

/* What a CDB asks for, if it is one served here: 1 and the fields, else 0. */
static int decode(const unsigned char *cdb, size_t room, const struct lun *lun, int *write,
                  uint64_t *lba, uint64_t *count, int *fua)
{
    unsigned int allowed;

    if (room < 1)
        return 0;
    switch (cdb[0]) {
    case 0x28: /* READ (10): byte 1 RDPROTECT DPO FUA RARC, 2-5 LBA, 6 group, 7-8 length */
    case 0x2A: /* WRITE (10): byte 1 WRPROTECT DPO FUA */
        if (room < 10)
            return 0;
        *write = cdb[0] == 0x2A;
        allowed = *write ? 0x18 : 0x1C;
        if ((cdb[1] & ~allowed) || cdb[6] || cdb[9])
            return 0;
        *lba = be32(cdb + 2);
        *count = be16(cdb + 7);
        break;
    case 0x88: /* READ (16): 2-9 LBA, 10-13 length, 14 group, 15 control */
    case 0x8A: /* WRITE (16) */
        if (room < 16)
            return 0;
        *write = cdb[0] == 0x8A;
        allowed = *write ? 0x18 : 0x1C;
        if ((cdb[1] & ~allowed) || cdb[14] || cdb[15])
            return 0;
        *lba = be64(cdb + 2);
        *count = be32(cdb + 10);
        break;
    default:
        return 0;
    }
    *fua = (cdb[1] & 0x08) != 0;
    if (*count == 0 || (lun->max_blocks && *count > lun->max_blocks))
        return 0;
    if (*lba >= lun->blocks || *count > lun->blocks - *lba)
        return 0;
    if (*write && !(lun->flags & ALLOW_WRITE))
        return 0;
    return 1;
}

/* A CMD entry's CDB offset and buffer, checked against the entry and the map: 1 with
 * ``iov`` (room for MAX_IOV) filled, their count and their total length, else 0. */
static int entry_buffer(unsigned char *map, size_t map_len, const unsigned char *e,
                        uint32_t length, struct iovec *iov, uint32_t *iov_cnt,
                        uint64_t *cdb_off, uint64_t *total)
{
    uint32_t n, i;

    if (length < IOV_OFF)
        return 0; /* no room for the request's fields: not read here */
    n = get32(e + REQ_IOV_CNT);
    *cdb_off = get64(e + REQ_CDB_OFF);
    if (n > MAX_IOV || IOV_OFF + (uint64_t)IOV_SIZE * n > length || *cdb_off >= map_len)
        return 0;
    *total = 0;
    for (i = 0; i < n; i++) {
        const unsigned char *v = e + IOV_OFF + (size_t)i * IOV_SIZE;
        uint64_t off = get64(v), len = get64(v + 8);
        if (off > map_len || len > map_len - off)
            return 0;
        iov[i].iov_base = map + off;
        iov[i].iov_len = (size_t)len;
        *total += len;
    }
    *iov_cnt = n;
    return 1;
}

/* One CMD entry at ``e`` served in full: 1, and the bytes added to ``moved`` (and, for a
 * READ, to ``moved_in``), else 0 (nothing answered). */
static int serve_entry(unsigned char *map, size_t map_len, unsigned char *e, uint32_t length,
                       const struct lun *lun, uint64_t *moved, uint64_t *moved_in)
{
    struct iovec iov[MAX_IOV];
    uint32_t iov_cnt;
    uint64_t cdb_off, lba, count, total, need;
    int write, fua;
    ssize_t n;

    if (!entry_buffer(map, map_len, e, length, iov, &iov_cnt, &cdb_off, &total) ||
        iov_cnt == 0)
        return 0;
    if (!decode(map + cdb_off, map_len - cdb_off, lun, &write, &lba, &count, &fua))
        return 0;
    need = count * lun->block_size;
    if (total != need || need > (uint64_t)SSIZE_MAX)
        return 0;
    if (write) {
        int rwf = (fua || (lun->flags & DSYNC_WRITES)) ? RWF_DSYNC : 0;
        n = pwritev2(lun->fd, iov, (int)iov_cnt, (off_t)(lba * lun->block_size), rwf);
    } else {
        n = preadv(lun->fd, iov, (int)iov_cnt, (off_t)(lba * lun->block_size));
    }
    if (n < 0 || (uint64_t)n != need)
        return 0;
    *moved += need;
    if (!write)
        *moved_in += need;
    return 1;
}

/* Answers held by the caller (serve()'s ``answers``), packed as ANS_HDR documents. */
struct answers {
    const unsigned char *buf;
    size_t len;
};

/* One CMD entry at ``e`` answered from ``held``: 1 with the response's uflags and
 * read_len, else 0 (nothing written). */
static int replay_entry(unsigned char *map, size_t map_len, const unsigned char *e,
                        uint32_t length, const struct answers *held, uint32_t *read_len)
{
    struct iovec iov[MAX_IOV];
    uint32_t iov_cnt, i;
    uint64_t cdb_off, total;
    size_t at = 0;

    if (held->len == 0 ||
        !entry_buffer(map, map_len, e, length, iov, &iov_cnt, &cdb_off, &total))
        return 0;
    while (held->len - at >= ANS_HDR) {
        const unsigned char *h = held->buf + at;
        uint32_t cdb_len = get32(h), buf_len = get32(h + 4), data_len = get32(h + 8);
        uint64_t size = (uint64_t)ANS_HDR + cdb_len + data_len;
        const unsigned char *data = h + ANS_HDR + cdb_len;

        if (size > held->len - at || data_len > buf_len)
            return 0; /* a table that is not whole answers nothing */
        at += (size_t)size;
        if (buf_len != total || cdb_len == 0 || cdb_len > map_len - cdb_off ||
            memcmp(map + cdb_off, h + ANS_HDR, cdb_len) != 0)
            continue;
        for (i = 0; i < iov_cnt && data_len; i++) {
            size_t len = iov[i].iov_len < data_len ? iov[i].iov_len : data_len;
            memcpy(iov[i].iov_base, data, len);
            data += len;
            data_len -= (uint32_t)len;
        }
        *read_len = get32(h + 12);
        return 1;
    }
    return 0;
}

/* The first CMD entry from ``tail`` up to ``pos`` (the entry being served): where its
 * response goes (any command may complete in any CMD slot: the kernel looks commands up
 * by cmd_id). NULL if the entries between are not whole (the ring is broken: the Python
 * path says so). */
static unsigned char *answer_slot(unsigned char *ring, uint32_t size, uint32_t *tail,
                                  uint32_t pos)
{
    uint32_t at = *tail, room = (pos - at + size) % size;

    for (;;) {
        unsigned char *s = ring + at;
        uint32_t len_op = get32(s), length = len_op & ~OP_MASK;
        if (at % ALIGN || at + HDR_SIZE > size || length == 0 || length > size - at)
            return NULL;
        if ((len_op & OP_MASK) == OP_CMD) {
            if (at + RSP_READ_LEN + 4 > size)
                return NULL; /* a response needs its 16 bytes inside the ring */
            *tail = (at + length) % size;
            return s;
        }
        if (length > room)
            return NULL;
        room -= length;
        at = (at + length) % size;
    }
}

/* One run of the direct path over a ring: where it is, what it did. */
struct run {
    unsigned char *map, *ring;
    size_t map_len;
    uint32_t size, pos, tail;
    unsigned long long outstanding;
    int uio_fd, kick_fd, awake;
    struct lun lun;
    struct answers held;
    unsigned long served;
    uint64_t moved, unwoken; /* bytes served; at the last wake-up */
    uint64_t moved_in, unwoken_in; /* of them, READs' (the kernel's completion copies) */
};

/* Ask the caller's reaper thread to wake the uio fd (an eventfd count): the kernel then
 * completes the answers written so far on that thread (for a READ, tcmu_handle_completion
 * copies the data area into the initiator's buffers) while this one serves the next
 * entry. Asked only for a wake-up that completes READs while another entry is queued: a
 * WRITE's completion copies nothing, and with nothing queued there is no next entry to
 * serve beside the copy; either is cheaper here than a switch to another thread. 1 when
 * asked. */
static int kick(int kick_fd)
{
    uint64_t one = 1;
    return write(kick_fd, &one, sizeof one) == sizeof one;
}

/* Whether the kernel has queued an entry past the one just answered: only then is there
 * a next ``preadv`` for the reaper's completion copy to run beside. A READ alone in the
 * ring is completed by this thread, which has its data area in cache and nothing else to
 * do, as tcmu-runner's I/O thread completes each of its READs. */
static int queued(const struct run *r)
{
    return __atomic_load_n((const uint32_t *)(r->map + MB_CMD_HEAD), __ATOMIC_ACQUIRE) %
               r->size != r->pos;
}

/* Serve the entries from r->pos, as serve() documents. 0: the ring is drained (pos is
 * the kernel's cmd_head); 1: stopped at an entry left unread for the Python path. */
static int serve_run(struct run *r)
{
    int stopped = 1;

    for (;;) {
        uint32_t head = get32(r->map + MB_CMD_HEAD) % r->size, len_op, length, op, next,
                 slot_tail, pos = r->pos;
        unsigned char *e, *slot;
        uint32_t read_len = 0;

        if (pos == head) {
            stopped = 0;
            break;
        }
        if (pos % ALIGN || pos + HDR_SIZE > r->size)
            break;
        e = r->ring + pos;
        len_op = get32(e);
        length = len_op & ~OP_MASK;
        op = len_op & OP_MASK;
        if (length == 0 || length > r->size - pos || length > (head - pos + r->size) % r->size)
            break;
        next = (pos + length) % r->size;
        if (op == OP_PAD) {
            r->pos = next;
            continue;
        }
        if (op != OP_CMD)
            break;
        slot_tail = r->tail;
        slot = answer_slot(r->ring, r->size, &slot_tail, pos);
        if (slot == NULL)
            break;
        if (!serve_entry(r->map, r->map_len, e, length, &r->lun, &r->moved, &r->moved_in) &&
            !replay_entry(r->map, r->map_len, e, length, &r->held, &read_len))
            break;
        r->pos = next;
        r->tail = slot_tail;
        slot[RSP_KFLAGS] = 0;
        slot[RSP_UFLAGS] = read_len ? UFLAG_READ_LEN : 0;
        memmove(slot + 4, e + 4, 2); /* cmd_id (the same slot when nothing waits) */
        slot[RSP_STATUS] = 0;       /* GOOD */
        memset(slot + RSP_STATUS + 1, 0, 3);
        put32(slot + RSP_READ_LEN, read_len);
        if (!r->outstanding)
            r->tail = r->pos; /* PAD entries read past are the kernel's again */
        __atomic_store_n((uint32_t *)(r->map + MB_CMD_TAIL), r->tail, __ATOMIC_RELEASE);
        r->served++;
        r->awake = 0;
        if (r->uio_fd >= 0 && r->moved - r->unwoken >= WAKE_EVERY) {
            uint32_t wake = 0;
            int reads = r->moved_in != r->unwoken_in;
            r->unwoken = r->moved;
            r->unwoken_in = r->moved_in;
            if (reads && r->kick_fd >= 0 && queued(r) && kick(r->kick_fd))
                r->awake = 1;
            else if (write(r->uio_fd, &wake, sizeof wake) == sizeof wake)
                r->awake = 1;
            else
                r->uio_fd = -1; /* the caller's own wake-up reports the failure */
        }
    }
    if (!r->outstanding && r->tail != r->pos) {
        r->tail = r->pos;
        __atomic_store_n((uint32_t *)(r->map + MB_CMD_TAIL), r->tail, __ATOMIC_RELEASE);
    }
    return stopped;
}

/* Both buffers a run holds, released. */
static void end_run(Py_buffer *view, Py_buffer *answers)
{
    PyBuffer_Release(view);
    if (answers->obj != NULL)
        PyBuffer_Release(answers);
}

/* The arguments of serve() or, with ``wake_fd`` and ``timeout_ms``, serve_wait(), checked,
 * in ``r``: 1, else 0 with an exception and both buffers released. */
static int begin_run(struct run *r, Py_buffer *view, Py_buffer *answers, PyObject *args,
                     int *wake_fd, int *timeout_ms)
{
    unsigned long long cmdr_off, cmdr_size, cursor, outstanding, block_size, blocks,
        max_blocks;
    int fd, uio_fd, flags, ok, kick_fd = -1;

    memset(answers, 0, sizeof *answers);
    if (wake_fd == NULL)
        ok = PyArg_ParseTuple(args, "w*KKKKiiKKKi|y*:serve", view, &cmdr_off, &cmdr_size,
                              &cursor, &outstanding, &fd, &uio_fd, &block_size, &blocks,
                              &max_blocks, &flags, answers);
    else
        ok = PyArg_ParseTuple(args, "w*KKKKiiKKKiii|y*i:serve_wait", view, &cmdr_off,
                              &cmdr_size, &cursor, &outstanding, &fd, &uio_fd, &block_size,
                              &blocks, &max_blocks, &flags, wake_fd, timeout_ms, answers,
                              &kick_fd);
    if (!ok)
        return 0;
    if (cmdr_size < HDR_SIZE || cmdr_size > UINT32_MAX || cmdr_off < MB_CMD_TAIL + 4 ||
        cmdr_off + cmdr_size > (unsigned long long)view->len || cursor >= cmdr_size ||
        block_size == 0) {
        end_run(view, answers);
        PyErr_SetString(PyExc_ValueError, "ring or LUN outside the map");
        return 0;
    }
    memset(r, 0, sizeof *r);
    r->map = view->buf;
    r->ring = r->map + cmdr_off;
    r->map_len = (size_t)view->len;
    r->size = (uint32_t)cmdr_size;
    r->pos = (uint32_t)cursor;
    r->tail = get32(r->map + MB_CMD_TAIL) % r->size;
    r->outstanding = outstanding;
    r->uio_fd = uio_fd;
    r->kick_fd = kick_fd;
    r->lun.fd = fd;
    r->lun.block_size = block_size;
    r->lun.blocks = blocks;
    r->lun.max_blocks = max_blocks;
    r->lun.flags = flags;
    r->held.buf = answers->buf;
    r->held.len = answers->obj != NULL ? (size_t)answers->len : 0;
    return 1;
}

static PyObject *serve(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view, answers;
    struct run r;

    if (!begin_run(&r, &view, &answers, args, NULL, NULL))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    serve_run(&r);
    Py_END_ALLOW_THREADS
    end_run(&view, &answers);
    return Py_BuildValue("(KkO)", (unsigned long long)r.pos, r.served,
                         r.awake ? Py_True : Py_False);
}

/* Why serve_wait() returned. */
#define AT_ENTRY 0 /* an entry for the Python path is at the cursor */
#define WOKEN 1    /* wake_fd became readable (or a signal came) */
#define TIME_UP 2  /* timeout_ms went by */
#define UIO_ERROR 3 /* the uio fd failed: the Python path's poll reports it */

/* The coarse clock: read from the vDSO page without a system call whatever the
 * clocksource (a guest on hpet makes CLOCK_MONOTONIC a system call and an emulated
 * register read, once per drained ring); a tick is fine grain for a deadline of a second. */
static long long now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
        clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static PyObject *serve_wait(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view, answers;
    int wake_fd, timeout_ms, uio_fd, why = TIME_UP;
    struct run r;

    if (!begin_run(&r, &view, &answers, args, &wake_fd, &timeout_ms))
        return NULL;
    uio_fd = r.uio_fd;
    if (uio_fd < 0 || wake_fd < 0) {
        end_run(&view, &answers);
        PyErr_SetString(PyExc_ValueError, "serve_wait needs the uio fd and a wake fd");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    {
        long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        for (;;) {
            struct pollfd pfd[2] = {{uio_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
            long long left;
            int n;

            if (serve_run(&r)) {
                why = AT_ENTRY;
                break;
            }
            if (r.served && !r.awake) { /* the kernel hears of every answer before we sleep */
                uint32_t wake = 0;
                r.unwoken = r.moved;
                r.unwoken_in = r.moved_in;
                if (write(uio_fd, &wake, sizeof wake) != sizeof wake) {
                    why = UIO_ERROR;
                    break;
                }
                r.awake = 1;
            }
            left = deadline - now_ms();
            if (left <= 0) {
                why = TIME_UP;
                break;
            }
            n = poll(pfd, 2, (int)left);
            if (n < 0) {
                why = errno == EINTR ? WOKEN : UIO_ERROR;
                break;
            }
            if (n == 0) {
                why = TIME_UP;
                break;
            }
            if (pfd[1].revents) {
                why = WOKEN;
                break;
            }
            if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
                why = UIO_ERROR;
                break;
            }
            if (pfd[0].revents & POLLIN) {
                uint32_t count;
                if (read(uio_fd, &count, sizeof count) < 0 && errno != EAGAIN &&
                    errno != EINTR) {
                    why = UIO_ERROR;
                    break;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    end_run(&view, &answers);
    return Py_BuildValue("(KkOi)", (unsigned long long)r.pos, r.served,
                         r.awake ? Py_True : Py_False, why);
}

/* A count written to the kick fd that ends reap() (after its last wake-up): above any
 * sum of the kicks serve_wait() writes, one per 256 KiB served. */
#define REAP_STOP (1ull << 40)

static PyObject *reap(PyObject *Py_UNUSED(module), PyObject *args)
{
    int kick_fd, uio_fd, err = 0;

    if (!PyArg_ParseTuple(args, "ii:reap", &kick_fd, &uio_fd))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        uint64_t count;
        uint32_t wake = 0;

        if (read(kick_fd, &count, sizeof count) != sizeof count) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        while (write(uio_fd, &wake, sizeof wake) != sizeof wake) {
            if (errno != EINTR) {
                err = errno;
                break;
            }
        }
        if (err || count >= REAP_STOP)
            break;
    }
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(err);
}

static PyMethodDef methods[] = {
    {"serve", serve, METH_VARARGS,
     "serve(map, cmdr_off, cmdr_size, cursor, outstanding, fd, uio_fd, block_size, blocks,\n"
     "      max_blocks, flags[, answers]) -> (cursor, served, woken)\n\n"
     "Serve the run of READ/WRITE (10/16) entries from ``cursor``, and of entries that\n"
     "``answers`` holds an answer for; stop at the first entry not served in full,\n"
     "which is left unread. ``woken``: ``uio_fd`` was woken after the last answer."},
    {"serve_wait", serve_wait, METH_VARARGS,
     "serve_wait(map, cmdr_off, cmdr_size, cursor, outstanding, fd, uio_fd, block_size,\n"
     "           blocks, max_blocks, flags, wake_fd, timeout_ms[, answers[, kick_fd]])\n"
     "    -> (cursor, served, woken, why)\n\n"
     "As serve(), and each time the ring is drained, wake the kernel if answers were\n"
     "written since, then wait for it on ``uio_fd`` and serve again: until an entry\n"
     "not served here is at the cursor (why 0), ``wake_fd`` is readable (1),\n"
     "``timeout_ms`` went by (2) or ``uio_fd`` failed (3). With ``kick_fd`` (an\n"
     "eventfd), the wake-ups every 256 KiB that complete READs while another entry\n"
     "is queued are asked of whoever reads it instead."},
    {"reap", reap, METH_VARARGS,
     "reap(kick_fd, uio_fd) -> errno\n\n"
     "Each time ``kick_fd`` (a blocking eventfd) is counted up, wake ``uio_fd``: the\n"
     "kernel completes the answers written so far on this thread. Returns 0 after the\n"
     "wake-up for a count of REAP_STOP or more, else the errno of the read or write\n"
     "that failed."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastio",
    "The TCMU ring's direct path for a disk LUN's READ and WRITE (10/16).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastio(void)
{
    PyObject *m = PyModule_Create(&module), *stop = PyLong_FromUnsignedLongLong(REAP_STOP);

    if (m == NULL || stop == NULL || PyModule_AddObjectRef(m, "REAP_STOP", stop) < 0) {
        Py_XDECREF(stop);
        Py_XDECREF(m);
        return NULL;
    }
    Py_DECREF(stop);
    return m;
}
