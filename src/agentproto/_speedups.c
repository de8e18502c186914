/*
 * agentproto._speedups: the frame-record layout of agentproto.layout, in C.
 *
 * Nearly every record of a recording is a frame record in Go's byte layout
 * (see layout.py). Reading them is the hot loop of every reader, so this
 * module does two things with them (and, for the frame readers of live
 * connections, codec.item_end's scan of CBOR heads):
 *
 *   scan_frame_records(buf, lo, envelopes)
 *       every candidate of buf[lo:] parsed, exactly as
 *       layout.parse_frame_records does with NumPy, as rows of int64;
 *   frame_run(buf, pos, base)
 *       the records from buf[pos] on, for as long as each is a frame record
 *       in the layout, built as Record objects: data-like frames straight
 *       from the parse, the frame map of others decoded here (the plain
 *       subset of CBOR that frames use: decode_plain) and handed to
 *       Frame.from_map.
 *
 * The acceptance rules are those of layout.py, line for line, and the tests
 * compare both with the NumPy and cbor2 paths. Anything else (another
 * layout, a value out of range, CBOR outside the plain subset, a map that
 * from_map refuses, a record cut by the end of the buffer) is left to the
 * Python readers, which decode it with cbor2 and report errors.
 * Every read is bounds-checked: buffers come from untrusted files.
 *
 * The objects are the slotted dataclasses of agentproto.types. Calling their
 * generated __init__ costs more than the rest of reading, so configure()
 * hands over each class with its slot offsets and field defaults, and
 * frame_run fills the slots directly: the same objects __init__ would make.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* Record{type: 3, frame: {seq: ...}}: how every frame record starts. */
static const unsigned char PREFIX[18] = {
    0xa2, 0x64, 't', 'y', 'p', 'e', 0x03, 0x65, 'f', 'r', 'a', 'm', 'e',
    0xa4, 0x63, 's', 'e', 'q'};
#define PREFIX_LEN 18
/* layout.FRAME_HEAD_MAX: candidates start at least this far before the end */
#define FRAME_HEAD_MAX 64

enum { NOT_IN_LAYOUT = 0, ENVELOPE = 1, WHOLE = 2 };

typedef struct {
    Py_ssize_t end;         /* WHOLE: the record's end */
    Py_ssize_t data;        /* WHOLE: where the payload starts (buf[data:end]) */
    Py_ssize_t frame_start; /* where the frame map starts */
    uint64_t seq, stream;
    int64_t ts;
    int direction, ftype;
} parsed_t;

static inline uint32_t be16(const unsigned char *p) { return ((uint32_t)p[0] << 8) | p[1]; }

static inline uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t be64(const unsigned char *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

/* A definite head of major type `major` at b[p] with a 0-4 byte argument:
 * its length (1, 2, 3 or 5), or 0 if it is not one or is cut by n. */
static inline int uint_head(const unsigned char *b, Py_ssize_t n, Py_ssize_t p, int major,
                            uint64_t *value)
{
    if (p >= n)
        return 0;
    int info = (int)b[p] - (major << 5);
    if (info < 0 || info > 26)
        return 0;
    if (info < 24) {
        *value = (uint64_t)info;
        return 1;
    }
    if (info == 24) {
        if (p + 2 > n)
            return 0;
        *value = b[p + 1];
        return 2;
    }
    if (info == 25) {
        if (p + 3 > n)
            return 0;
        *value = be16(b + p + 1);
        return 3;
    }
    if (p + 5 > n)
        return 0;
    *value = be32(b + p + 1);
    return 5;
}

/* The frame record at b[pos], as layout.parse_frame_records judges it. */
static int parse_one(const unsigned char *b, Py_ssize_t n, Py_ssize_t pos, parsed_t *out)
{
    uint64_t seq, stream = 0, size = 0, ts;
    Py_ssize_t p;
    int k;

    if (n - pos < PREFIX_LEN || memcmp(b + pos, PREFIX, PREFIX_LEN) != 0)
        return NOT_IN_LAYOUT;
    p = pos + PREFIX_LEN;
    if (!(k = uint_head(b, n, p, 0, &seq)))
        return NOT_IN_LAYOUT;
    p += k;
    /* 62"ts" 1b <8 bytes>: an int64 timestamp */
    if (n - p < 12 || be32(b + p) != 0x6274731BU)
        return NOT_IN_LAYOUT;
    ts = be64(b + p + 4);
    if (ts >> 63)
        return NOT_IN_LAYOUT;
    p += 12;
    /* 63"dir" <0-23> 65"frame" <map head> */
    if (n - p < 12 || be32(b + p) != 0x63646972U || b[p + 4] >= 24)
        return NOT_IN_LAYOUT;
    if (be32(b + p + 5) != 0x65667261U || be16(b + p + 9) != 0x6D65U)
        return NOT_IN_LAYOUT;
    int fields = (int)b[p + 11] - 0xa0;
    if (fields < 0 || fields >= 28)
        return NOT_IN_LAYOUT;
    out->seq = seq;
    out->ts = (int64_t)ts;
    out->direction = b[p + 4];
    out->frame_start = p + 11;
    /* the envelope holds; is the frame {t, [s], [d]}? */
    if (fields < 1 || fields > 3 || n - p < 15 || be16(b + p + 12) != 0x6174U || b[p + 14] >= 24)
        return ENVELOPE;
    out->ftype = b[p + 14];
    p += 15;
    int has_s = n - p >= 2 && be16(b + p) == 0x6173U && fields >= 2;
    if (has_s) {
        if (!(k = uint_head(b, n, p + 2, 0, &stream)))
            return ENVELOPE;
        p += 2 + k;
    }
    int has_d = n - p >= 2 && be16(b + p) == 0x6164U && fields >= 2 + has_s;
    Py_ssize_t start = p;
    if (has_d) {
        if (!(k = uint_head(b, n, p + 2, 2, &size)))
            return ENVELOPE;
        start = p + 2 + k;
    }
    if (fields != 1 + has_s + has_d || (uint64_t)(n - start) < size)
        return ENVELOPE;
    out->stream = stream;
    out->data = start;
    out->end = start + (Py_ssize_t)size;
    return WHOLE;
}

/* --- scan_frame_records -------------------------------------------------------- */

typedef struct {
    int64_t *rows;
    Py_ssize_t len, cap; /* in int64s */
} rows_t;

/* Runs without the GIL: raw allocator, and the caller raises on -1. */
static int rows_add(rows_t *r, const int64_t *row, Py_ssize_t width)
{
    if (r->len + width > r->cap) {
        Py_ssize_t cap = r->cap ? r->cap * 2 : 1024 * width;
        int64_t *grown = PyMem_RawRealloc(r->rows, (size_t)cap * sizeof(int64_t));
        if (grown == NULL)
            return -1;
        r->rows = grown;
        r->cap = cap;
    }
    memcpy(r->rows + r->len, row, (size_t)width * sizeof(int64_t));
    r->len += width;
    return 0;
}

static PyObject *rows_bytes(const rows_t *r)
{
    return PyBytes_FromStringAndSize((const char *)r->rows, r->len * (Py_ssize_t)sizeof(int64_t));
}

PyDoc_STRVAR(scan_doc,
"scan_frame_records(buf, lo, envelopes) -> (whole, others)\n\n"
"Every candidate of buf[lo:] (FRAME_RECORD_PREFIX at least FRAME_HEAD_MAX bytes\n"
"before the end) parsed as layout.parse_frame_records does: 'whole' holds int64\n"
"rows (pos, end, seq, ts, direction, ftype, stream, data), 'others' rows (pos,\n"
"frame, seq, ts, direction) of the other envelopes (none unless envelopes).");

static PyObject *scan_frame_records(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t lo;
    int envelopes;
    if (!PyArg_ParseTuple(args, "y*np:scan_frame_records", &view, &lo, &envelopes))
        return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t n = view.len;
    rows_t whole = {NULL, 0, 0}, other = {NULL, 0, 0};
    PyObject *result = NULL;
    int out_of_memory = 0;
    Py_ssize_t last = n - FRAME_HEAD_MAX; /* the last candidate start */
    Py_ssize_t pos = lo < 0 ? 0 : lo;

    Py_BEGIN_ALLOW_THREADS
    while (pos <= last) {
        const unsigned char *hit = memchr(b + pos, PREFIX[0], (size_t)(last - pos + 1));
        if (hit == NULL)
            break;
        pos = hit - b;
        parsed_t r;
        int kind = parse_one(b, n, pos, &r);
        if (kind == WHOLE) {
            int64_t row[8] = {pos, r.end, (int64_t)r.seq, r.ts, r.direction, r.ftype,
                              (int64_t)r.stream, r.data};
            if ((out_of_memory = rows_add(&whole, row, 8) < 0))
                break;
        } else if (kind == ENVELOPE && envelopes) {
            int64_t row[5] = {pos, r.frame_start, (int64_t)r.seq, r.ts, r.direction};
            if ((out_of_memory = rows_add(&other, row, 5) < 0))
                break;
        }
        pos++;
    }
    Py_END_ALLOW_THREADS

    if (out_of_memory) {
        PyErr_NoMemory();
    } else {
        PyObject *w = rows_bytes(&whole);
        PyObject *o = rows_bytes(&other);
        if (w && o)
            result = PyTuple_Pack(2, w, o);
        Py_XDECREF(w);
        Py_XDECREF(o);
    }
    PyMem_RawFree(whole.rows);
    PyMem_RawFree(other.rows);
    PyBuffer_Release(&view);
    return result;
}

/* --- the frame map of other frame records ------------------------------------------ */

/* Go's limit on the entries of one container (codec.MAX_CONTAINER_ITEMS) */
#define MAX_CONTAINER_ITEMS 131072
/* deeper frame maps are left to cbor2, which applies Go's nesting limit */
#define MINI_MAX_DEPTH 16

/* One CBOR item at b[*p], decoded into what cbor2 makes of it, for the plain
 * subset frames use: unsigned and negative integers (within int64), byte and
 * text strings, arrays, maps with text or integer keys, false, true, null; all
 * of definite length. Anything else (tags, floats, indefinite lengths, other
 * simple values or keys, invalid UTF-8, a cut, more entries than Go allows)
 * returns NULL with no exception set: the caller leaves that record to cbor2,
 * which decodes it or reports the error. NULL with an exception: out of memory. */
static PyObject *mini_decode(const unsigned char *b, Py_ssize_t n, Py_ssize_t *p, int depth)
{
    if (*p >= n || depth > MINI_MAX_DEPTH)
        return NULL;
    int ib = b[*p], major = ib >> 5, info = ib & 31;
    if (major == 7) {
        *p += 1;
        if (ib == 0xf4)
            Py_RETURN_FALSE;
        if (ib == 0xf5)
            Py_RETURN_TRUE;
        if (ib == 0xf6)
            Py_RETURN_NONE;
        return NULL;
    }
    uint64_t arg;
    Py_ssize_t head;
    if (info < 24) {
        arg = (uint64_t)info;
        head = 1;
    } else if (info <= 27) {
        head = 1 + ((Py_ssize_t)1 << (info - 24));
        if (n - *p < head)
            return NULL;
        const unsigned char *a = b + *p + 1;
        arg = info == 24 ? a[0] : info == 25 ? be16(a) : info == 26 ? be32(a) : be64(a);
    } else {
        return NULL; /* reserved, or indefinite length */
    }
    *p += head;
    Py_ssize_t left = n - *p;
    switch (major) {
    case 0:
        return PyLong_FromUnsignedLongLong(arg);
    case 1:
        if (arg > (uint64_t)INT64_MAX)
            return NULL;
        return PyLong_FromLongLong(-1 - (long long)arg);
    case 2:
    case 3: {
        if (arg > (uint64_t)left)
            return NULL;
        const char *s = (const char *)b + *p;
        *p += (Py_ssize_t)arg;
        if (major == 2)
            return PyBytes_FromStringAndSize(s, (Py_ssize_t)arg);
        PyObject *text = PyUnicode_DecodeUTF8(s, (Py_ssize_t)arg, "strict");
        if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            PyErr_Clear();
        return text;
    }
    case 4: {
        if (arg > MAX_CONTAINER_ITEMS || arg > (uint64_t)left)
            return NULL;
        PyObject *list = PyList_New((Py_ssize_t)arg);
        if (list == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < (Py_ssize_t)arg; i++) {
            PyObject *item = mini_decode(b, n, p, depth + 1);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, i, item);
        }
        return list;
    }
    case 5: {
        if (arg > MAX_CONTAINER_ITEMS || arg > (uint64_t)left / 2)
            return NULL;
        PyObject *dict = PyDict_New();
        if (dict == NULL)
            return NULL;
        for (uint64_t i = 0; i < arg; i++) {
            PyObject *key = mini_decode(b, n, p, depth + 1);
            if (key == NULL || !(PyUnicode_CheckExact(key) || PyLong_CheckExact(key))) {
                Py_XDECREF(key);
                Py_DECREF(dict);
                return NULL;
            }
            PyObject *value = mini_decode(b, n, p, depth + 1);
            int failed = value == NULL || PyDict_SetItem(dict, key, value) < 0;
            Py_DECREF(key);
            Py_XDECREF(value);
            if (failed) {
                Py_DECREF(dict);
                return NULL;
            }
        }
        return dict;
    }
    default:
        return NULL; /* a tag */
    }
}

PyDoc_STRVAR(decode_doc,
"decode_plain(buf, pos) -> (item, end) or None\n\n"
"The CBOR item at buf[pos] as cbor2 decodes it, if it is in the plain subset\n"
"frame maps use (see mini_decode in _speedups.c); None otherwise.");

static PyObject *decode_plain(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos;
    if (!PyArg_ParseTuple(args, "y*n:decode_plain", &view, &pos))
        return NULL;
    PyObject *result = NULL;
    if (pos >= 0 && pos < view.len) {
        Py_ssize_t p = pos;
        PyObject *item = mini_decode(view.buf, view.len, &p, 0);
        if (item != NULL) {
            result = Py_BuildValue("(Nn)", item, p);
        }
    }
    PyBuffer_Release(&view);
    if (result == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return result;
}

/* --- item_end: where a CBOR item ends, from its heads ---------------------------------- */

PyDoc_STRVAR(item_end_doc,
"item_end(buf, pos, max_items, max_depth) -> int or None\n\n"
"codec.item_end's scan of the item at buf[pos]: its end (> pos), or -needed\n"
"when the buffer ends inside it (needed: the bytes codec.Incomplete asks\n"
"for), or None for what codec.item_end raises an error for (it says which).");

/* Line for line codec.item_end; the counts fit in int64 (limits checked first). */
static PyObject *item_end(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, max_items, max_depth;
    if (!PyArg_ParseTuple(args, "y*nnn:item_end", &view, &pos, &max_items, &max_depth))
        return NULL;
    const unsigned char *b = view.buf;
    const int64_t n = view.len;
    int64_t stack[64];       /* the pending counts of the enclosing containers */
    int depth = 0;
    int64_t outer_sum = 0;   /* sum of stack[0..depth) */
    int64_t pending = 1;
    int64_t p = pos;
    int64_t result = 0;      /* 0: an error for Python to raise */
    if (pos < 0 || max_depth < 0 || max_depth >= 63 || max_items < 0) {
        goto done;
    }
    for (;;) {
        while (!pending) {
            if (!depth) {
                result = p;
                goto done;
            }
            pending = stack[--depth];
            outer_sum -= pending;
        }
        if (p >= n) {
            result = -(p + pending + outer_sum);
            goto done;
        }
        unsigned head = b[p++];
        unsigned major = head >> 5, info = head & 0x1f;
        uint64_t arg;
        if (info < 24) {
            arg = info;
        } else if (info <= 27) {
            int64_t size = (int64_t)1 << (info - 24);
            if (p + size > n) {
                result = -(p + size);
                goto done;
            }
            arg = 0;
            for (int64_t i = 0; i < size; i++)
                arg = (arg << 8) | b[p + i];
            p += size;
        } else {
            goto done; /* indefinite length or reserved */
        }
        pending--;
        if (major == 2 || major == 3) {
            if (arg > (uint64_t)(n - p)) {
                /* cut: the bytes needed, unless that overflows (Python's ints do not) */
                if (arg > (uint64_t)INT64_MAX / 2)
                    goto done;
                result = -(p + (int64_t)arg + pending + outer_sum);
                goto done;
            }
            p += (int64_t)arg;
        } else if (major >= 4 && major <= 6) {
            if (major != 6 && arg > (uint64_t)max_items)
                goto done;
            int64_t count = major == 6 ? 1 : (int64_t)arg << (major == 5);
            if (count) {
                stack[depth++] = pending;
                outer_sum += pending;
                pending = count;
                if (depth > max_depth)
                    goto done;
            }
        }
    }
done:
    PyBuffer_Release(&view);
    if (!result)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(result);
}

/* --- frame_run: building the records ----------------------------------------------- */

#define MAX_FIELDS 16

typedef struct {
    PyTypeObject *type;
    Py_ssize_t nfields;
    Py_ssize_t offset[MAX_FIELDS];
    PyObject *defaults[MAX_FIELDS];
} class_t;

/* Record, RecordedFrame and Frame; the first fields of each that frame_run sets */
static class_t record_cls, recorded_cls, frame_cls;
enum { RECORD_TYPE = 0, RECORD_FRAME = 3 };
enum { RECORDED_SEQ = 0, RECORDED_TS = 1, RECORDED_DIR = 2, RECORDED_FRAME = 3 };
enum { FRAME_TYPE = 0, FRAME_STREAM = 1, FRAME_DATA = 2 };
static PyObject *record_type_frame;  /* RecordType.FRAME */
static PyObject *frame_from_map;     /* Frame.from_map, for the frames of other types */
static PyObject *frame_types[24];    /* FrameType member or int, by wire value */
static PyObject *directions[24];     /* Direction member or int, by wire value */
static int configured;

/* An instance with every slot at its default (what the class's __init__ would do
 * with no arguments), ready for frame_run to replace some. */
static PyObject *new_instance(class_t *c)
{
    PyObject *obj = c->type->tp_alloc(c->type, 0);
    if (obj == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < c->nfields; i++) {
        Py_INCREF(c->defaults[i]);
        *(PyObject **)((char *)obj + c->offset[i]) = c->defaults[i];
    }
    return obj;
}

/* Put `value` (a new reference, stolen) in slot `i`. */
static inline void set_slot(PyObject *obj, class_t *c, int i, PyObject *value)
{
    PyObject **slot = (PyObject **)((char *)obj + c->offset[i]);
    PyObject *old = *slot;
    *slot = value;
    Py_XDECREF(old);
}

static int load_class(class_t *c, PyObject *spec)
{
    PyObject *type, *descrs, *defaults;
    if (!PyArg_ParseTuple(spec, "O!O!O!:configure", &PyType_Type, &type, &PyTuple_Type, &descrs,
                          &PyTuple_Type, &defaults))
        return -1;
    PyTypeObject *t = (PyTypeObject *)type;
    Py_ssize_t n = PyTuple_GET_SIZE(descrs);
    if (n > MAX_FIELDS || n < 4 || n != PyTuple_GET_SIZE(defaults) || t->tp_dictoffset != 0 ||
        t->tp_alloc == NULL) {
        PyErr_Format(PyExc_TypeError, "%s: not a slotted dataclass frame_run can fill", t->tp_name);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyTuple_GET_ITEM(descrs, i);
        if (!Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "%s: field %zd is not a slot", t->tp_name, i);
            return -1;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY) ||
            ((PyMemberDescrObject *)d)->d_common.d_type != t) {
            PyErr_Format(PyExc_TypeError, "%s: slot %s cannot be filled", t->tp_name, m->name);
            return -1;
        }
        c->offset[i] = m->offset;
        Py_XSETREF(c->defaults[i], Py_NewRef(PyTuple_GET_ITEM(defaults, i)));
    }
    Py_XSETREF(c->type, (PyTypeObject *)Py_NewRef(type));
    c->nfields = n;
    return 0;
}

static int load_table(PyObject **table, PyObject *seq)
{
    if (!PyList_Check(seq) || PyList_GET_SIZE(seq) != 24) {
        PyErr_SetString(PyExc_TypeError, "configure: tables are lists of 24 values");
        return -1;
    }
    for (Py_ssize_t i = 0; i < 24; i++)
        Py_XSETREF(table[i], Py_NewRef(PyList_GET_ITEM(seq, i)));
    return 0;
}

PyDoc_STRVAR(configure_doc,
"configure(record, recorded, frame, record_type_frame, frame_types, directions,\n"
"          frame_from_map)\n\n"
"record, recorded and frame are (class, member descriptors, defaults) of Record,\n"
"RecordedFrame and Frame, fields in declaration order; the tables give the value\n"
"for each one-byte frame type and direction; frame_from_map(map) makes the Frame\n"
"of any other frame map.");

static PyObject *configure(PyObject *self, PyObject *args)
{
    PyObject *rec, *recorded, *frame, *rtype, *ftypes, *dirs, *from_map;
    if (!PyArg_ParseTuple(args, "O!O!O!OOOO:configure", &PyTuple_Type, &rec, &PyTuple_Type,
                          &recorded, &PyTuple_Type, &frame, &rtype, &ftypes, &dirs, &from_map))
        return NULL;
    if (!PyCallable_Check(from_map)) {
        PyErr_SetString(PyExc_TypeError, "configure: frame_from_map is not callable");
        return NULL;
    }
    configured = 0;
    if (load_class(&record_cls, rec) < 0 || load_class(&recorded_cls, recorded) < 0 ||
        load_class(&frame_cls, frame) < 0 || load_table(frame_types, ftypes) < 0 ||
        load_table(directions, dirs) < 0)
        return NULL;
    Py_XSETREF(record_type_frame, Py_NewRef(rtype));
    Py_XSETREF(frame_from_map, Py_NewRef(from_map));
    configured = 1;
    Py_RETURN_NONE;
}

/* The Frame of a WHOLE record: type, stream and payload from the parse. */
static PyObject *data_frame(const unsigned char *b, const parsed_t *r)
{
    PyObject *frame = new_instance(&frame_cls);
    if (frame == NULL)
        return NULL;
    PyObject *data = PyBytes_FromStringAndSize((const char *)b + r->data, r->end - r->data);
    PyObject *stream = PyLong_FromUnsignedLongLong(r->stream);
    if (data == NULL || stream == NULL) {
        Py_XDECREF(data);
        Py_XDECREF(stream);
        Py_DECREF(frame);
        return NULL;
    }
    set_slot(frame, &frame_cls, FRAME_TYPE, Py_NewRef(frame_types[r->ftype]));
    set_slot(frame, &frame_cls, FRAME_STREAM, stream);
    set_slot(frame, &frame_cls, FRAME_DATA, data);
    return frame;
}

/* The Frame of another frame record in the layout: its map decoded here and
 * converted by Frame.from_map. NULL with no exception: leave it to cbor2 (a
 * map outside the plain subset, or one from_map refuses: the general path
 * then reports the same error); *end is set to the record's end. */
static PyObject *other_frame(const unsigned char *b, Py_ssize_t n, const parsed_t *r,
                             Py_ssize_t *end)
{
    Py_ssize_t p = r->frame_start;
    PyObject *map = mini_decode(b, n, &p, 0);
    if (map == NULL)
        return NULL;
    PyObject *frame = NULL;
    if (PyDict_CheckExact(map)) {
        frame = PyObject_CallOneArg(frame_from_map, map);
        if (frame == NULL && PyErr_ExceptionMatches(PyExc_Exception))
            PyErr_Clear(); /* as the Python path's `except Exception` */
    }
    Py_DECREF(map);
    *end = p;
    return frame;
}

/* Record{type: FRAME, frame: RecordedFrame{seq, ts, dir, frame}}; steals frame. */
static PyObject *frame_record(PyObject *frame, const parsed_t *r)
{
    PyObject *recorded = new_instance(&recorded_cls);
    if (recorded == NULL) {
        Py_DECREF(frame);
        return NULL;
    }
    set_slot(recorded, &recorded_cls, RECORDED_FRAME, frame);
    PyObject *seq = PyLong_FromUnsignedLongLong(r->seq);
    PyObject *ts = PyLong_FromLongLong(r->ts);
    if (seq == NULL || ts == NULL) {
        Py_XDECREF(seq);
        Py_XDECREF(ts);
        Py_DECREF(recorded);
        return NULL;
    }
    set_slot(recorded, &recorded_cls, RECORDED_SEQ, seq);
    set_slot(recorded, &recorded_cls, RECORDED_TS, ts);
    set_slot(recorded, &recorded_cls, RECORDED_DIR, Py_NewRef(directions[r->direction]));

    PyObject *record = new_instance(&record_cls);
    if (record == NULL) {
        Py_DECREF(recorded);
        return NULL;
    }
    set_slot(record, &record_cls, RECORD_TYPE, Py_NewRef(record_type_frame));
    set_slot(record, &record_cls, RECORD_FRAME, recorded);
    return record;
}

/* frame_run(buf, pos, base): an iterator over the run of records from buf[pos].
 * It builds each record as it is asked for: a chunk's worth of live objects
 * would have the cyclic garbage collector scan and promote them. */
typedef struct {
    PyObject_HEAD
    Py_buffer view;
    Py_ssize_t pos;  /* where the next record starts in buf */
    Py_ssize_t base; /* file offset of buf[0] */
    int stopped;     /* the record at pos is not one this run builds */
    int kind;        /* what it is then: NOT_IN_LAYOUT or ENVELOPE */
    parsed_t at;     /* its envelope, if ENVELOPE */
} RunObject;

static PyTypeObject RunType;

PyDoc_STRVAR(run_doc,
"frame_run(buf, pos, base) -> iterator of Record\n\n"
"The records from buf[pos] on, one after the other, for as long as each is a\n"
"frame record in the layout ending inside buf, built as Record objects one at\n"
"a time: {t, [s], [d]} frames from the parse, others with their map decoded\n"
"here (the plain subset of CBOR) and made by Frame.from_map. Attributes: pos (where the next record\n"
"starts in buf), end (base + pos: the file offset after the last record\n"
"yielded) and, once stopped, envelope: (frame start, seq, ts, direction) of\n"
"the record at pos if it is another frame record in the layout, else None.");

static PyObject *frame_run(PyObject *self, PyObject *args)
{
    PyObject *buf;
    Py_ssize_t pos, base;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "frame_run before configure");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "Onn:frame_run", &buf, &pos, &base))
        return NULL;
    RunObject *run = PyObject_New(RunObject, &RunType);
    if (run == NULL)
        return NULL;
    if (PyObject_GetBuffer(buf, &run->view, PyBUF_SIMPLE) < 0) {
        run->view.obj = NULL;
        Py_DECREF(run);
        return NULL;
    }
    run->pos = pos < 0 ? run->view.len : pos;
    run->base = base;
    run->stopped = 0;
    run->kind = NOT_IN_LAYOUT;
    return (PyObject *)run;
}

static PyObject *run_next(RunObject *run)
{
    if (run->stopped)
        return NULL;
    const unsigned char *b = run->view.buf;
    Py_ssize_t n = run->view.len, end = 0;
    parsed_t r = {0};
    int kind = run->pos < n ? parse_one(b, n, run->pos, &r) : NOT_IN_LAYOUT;
    PyObject *frame = NULL;
    if (kind == WHOLE) {
        frame = data_frame(b, &r);
        end = r.end;
    } else if (kind == ENVELOPE) {
        frame = other_frame(b, n, &r, &end);
    }
    if (frame == NULL) {
        if (PyErr_Occurred())
            return NULL;
        run->stopped = 1; /* the Python reader takes it from here */
        run->kind = kind;
        run->at = r;
        return NULL;
    }
    PyObject *record = frame_record(frame, &r);
    if (record != NULL)
        run->pos = end;
    return record;
}

static void run_dealloc(RunObject *run)
{
    if (run->view.obj != NULL)
        PyBuffer_Release(&run->view);
    PyObject_Free(run);
}

static PyObject *run_end(RunObject *run, void *closure) { return PyLong_FromSsize_t(run->base + run->pos); }

static PyObject *run_envelope(RunObject *run, void *closure)
{
    if (!run->stopped || run->kind != ENVELOPE)
        Py_RETURN_NONE;
    return Py_BuildValue("(nKLi)", run->at.frame_start, (unsigned long long)run->at.seq,
                         (long long)run->at.ts, run->at.direction);
}

static PyMemberDef run_members[] = {
    {"pos", T_PYSSIZET, offsetof(RunObject, pos), READONLY, "where the next record starts in buf"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef run_getset[] = {
    {"end", (getter)run_end, NULL, "the file offset after the last record yielded", NULL},
    {"envelope", (getter)run_envelope, NULL, "the envelope of the record the run stopped at", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RunType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "agentproto._speedups.FrameRun",
    .tp_basicsize = sizeof(RunObject),
    .tp_dealloc = (destructor)run_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = run_doc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)run_next,
    .tp_members = run_members,
    .tp_getset = run_getset,
};

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, configure_doc},
    {"decode_plain", decode_plain, METH_VARARGS, decode_doc},
    {"frame_run", frame_run, METH_VARARGS, run_doc},
    {"item_end", item_end, METH_VARARGS, item_end_doc},
    {"scan_frame_records", scan_frame_records, METH_VARARGS, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "agentproto._speedups",
    "The frame-record layout of agentproto.layout, in C (see layout.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    if (PyType_Ready(&RunType) < 0)
        return NULL;
    return PyModule_Create(&module);
}
