/*
 * The TCMU ring's direct path for a disk LUN: runs of READ (10/16) and WRITE (10/16)
 * served straight from the ring, with the GIL released.
 *
 * serve() reads CMD entries from the daemon's cursor, moves each one's blocks between
 * the backing file and the data area with one preadv/pwritev (SBC-4 5.13, 5.15, 5.37,
 * 5.39), writes a GOOD response into the next CMD slot at cmd_tail and advances
 * cmd_tail, exactly as lio_xcopy.tcmu.ring.CommandRing.complete does. It stops, leaving
 * the entry unread, at the first one it does not serve in full: a TMR entry, any other
 * opcode, a field it does not handle (RDPROTECT/WRPROTECT, reserved bits, a group
 * number, a control byte, a transfer length of 0 or above the Block Limits), blocks
 * outside the LUN, a buffer whose length is not the CDB's (residuals), a WRITE the
 * caller did not allow, a failed or short transfer, or anything malformed. The Python
 * path then answers that entry as it answers every command, with the sense data it
 * owes; a READ or WRITE it redoes moves the same bytes again.
 *
 * The layout is struct tcmu_mailbox and struct tcmu_cmd_entry of
 * include/uapi/linux/target_core_user.h (host byte order, as the kernel writes it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
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
#define RSP_STATUS 8u
#define RSP_READ_LEN 12u
#define ALIGN 8u
#define MAX_IOV 1024u

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

/* One CMD entry at ``e`` served in full: 1, else 0 (nothing answered). */
static int serve_entry(unsigned char *map, size_t map_len, unsigned char *e, uint32_t length,
                       const struct lun *lun, uint64_t *moved)
{
    struct iovec iov[MAX_IOV];
    uint32_t iov_cnt;
    uint64_t cdb_off, lba, count, total = 0, need;
    int write, fua;
    ssize_t n;
    uint32_t i;

    if (length < IOV_OFF + IOV_SIZE)
        return 0; /* no room for the request's fields and an iovec: not read here */
    iov_cnt = get32(e + REQ_IOV_CNT);
    cdb_off = get64(e + REQ_CDB_OFF);
    if (iov_cnt == 0 || iov_cnt > MAX_IOV || IOV_OFF + (uint64_t)IOV_SIZE * iov_cnt > length)
        return 0;
    if (cdb_off >= map_len)
        return 0;
    if (!decode(map + cdb_off, map_len - cdb_off, lun, &write, &lba, &count, &fua))
        return 0;
    for (i = 0; i < iov_cnt; i++) {
        const unsigned char *v = e + IOV_OFF + (size_t)i * IOV_SIZE;
        uint64_t off = get64(v), len = get64(v + 8);
        if (off > map_len || len > map_len - off)
            return 0;
        iov[i].iov_base = map + off;
        iov[i].iov_len = (size_t)len;
        total += len;
    }
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
    return 1;
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

static PyObject *serve(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    unsigned long long cmdr_off, cmdr_size, cursor, outstanding, block_size, blocks,
        max_blocks;
    int fd, uio_fd, flags, awake = 0;
    unsigned long served = 0;
    uint64_t moved = 0, unwoken = 0; /* bytes served; at the last wake-up */

    if (!PyArg_ParseTuple(args, "w*KKKKiiKKKi:serve", &view, &cmdr_off, &cmdr_size, &cursor,
                          &outstanding, &fd, &uio_fd, &block_size, &blocks, &max_blocks,
                          &flags))
        return NULL;
    if (cmdr_size < HDR_SIZE || cmdr_size > UINT32_MAX || cmdr_off < MB_CMD_TAIL + 4 ||
        cmdr_off + cmdr_size > (unsigned long long)view.len || cursor >= cmdr_size ||
        block_size == 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "ring or LUN outside the map");
        return NULL;
    }
    {
        unsigned char *map = view.buf, *ring = map + cmdr_off;
        size_t map_len = (size_t)view.len;
        uint32_t size = (uint32_t)cmdr_size, pos = (uint32_t)cursor;
        uint32_t tail = get32(map + MB_CMD_TAIL) % size;
        struct lun lun = {fd, block_size, blocks, max_blocks, flags};

        Py_BEGIN_ALLOW_THREADS
        for (;;) {
            uint32_t head = get32(map + MB_CMD_HEAD) % size, len_op, length, op, next, slot_tail;
            unsigned char *e, *slot;

            if (pos == head || pos % ALIGN || pos + HDR_SIZE > size)
                break;
            e = ring + pos;
            len_op = get32(e);
            length = len_op & ~OP_MASK;
            op = len_op & OP_MASK;
            if (length == 0 || length > size - pos || length > (head - pos + size) % size)
                break;
            next = (pos + length) % size;
            if (op == OP_PAD) {
                pos = next;
                continue;
            }
            if (op != OP_CMD)
                break;
            slot_tail = tail;
            slot = answer_slot(ring, size, &slot_tail, pos);
            if (slot == NULL || !serve_entry(map, map_len, e, length, &lun, &moved))
                break;
            pos = next;
            tail = slot_tail;
            slot[RSP_KFLAGS] = 0;
            slot[RSP_UFLAGS] = 0;
            memmove(slot + 4, e + 4, 2); /* cmd_id (the same slot when nothing waits) */
            slot[RSP_STATUS] = 0;       /* GOOD */
            memset(slot + RSP_STATUS + 1, 0, 3);
            put32(slot + RSP_READ_LEN, 0);
            if (!outstanding)
                tail = pos; /* PAD entries read past are the kernel's again */
            __atomic_store_n((uint32_t *)(map + MB_CMD_TAIL), tail, __ATOMIC_RELEASE);
            served++;
            awake = 0;
            if (uio_fd >= 0 && moved - unwoken >= WAKE_EVERY) {
                uint32_t wake = 0;
                unwoken = moved;
                if (write(uio_fd, &wake, sizeof wake) == sizeof wake)
                    awake = 1;
                else
                    uio_fd = -1; /* the caller's own wake-up reports the failure */
            }
        }
        if (!outstanding && tail != pos) {
            tail = pos;
            __atomic_store_n((uint32_t *)(map + MB_CMD_TAIL), tail, __ATOMIC_RELEASE);
        }
        Py_END_ALLOW_THREADS
        cursor = pos;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(KkO)", cursor, served, awake ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"serve", serve, METH_VARARGS,
     "serve(map, cmdr_off, cmdr_size, cursor, outstanding, fd, uio_fd, block_size, blocks,\n"
     "      max_blocks, flags) -> (cursor, served, woken)\n\n"
     "Serve the run of READ/WRITE (10/16) entries from ``cursor``; stop at the first\n"
     "entry not served in full, which is left unread. ``woken``: ``uio_fd`` was woken\n"
     "after the last answer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastio",
    "The TCMU ring's direct path for a disk LUN's READ and WRITE (10/16).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastio(void) { return PyModule_Create(&module); }
