/* The recording hot path in C: `flor.log` of a float or a 64-bit int and the steps of `flor.loop` over
 * `range(n)`. Each does exactly what its Python version in florgit/api does (functions.log,
 * Recorder.loop), appending the same packed rows (codec.packed) to the same bytearrays,
 * without Python's per-call and per-generator cost. Anything else (another value type, a
 * name's first log, keyword arguments, a checkpointed loop) is handed to the Python code,
 * which stays the reference: tests run both and compare what they store.
 *
 * Optional: when this module is not built, florgit uses the Python versions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#if !PY_LITTLE_ENDIAN
#error "packed rows are little-endian; florgit uses its Python hot path on this platform"
#endif

#define INT_ROW 1  /* codec.packed: a row's kind in the low bits of its name code */

static PyObject *s_rec, *s_codes, *s_records, *s_ctx, *s_depth, *s_limit, *s_drain;

/* Append `size` bytes to a bytearray (the same growth as `buf += ...`). */
static int
append_bytes(PyObject *buf, const void *data, Py_ssize_t size)
{
    Py_ssize_t n = PyByteArray_GET_SIZE(buf);
    if (PyByteArray_Resize(buf, n + size) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(buf) + n, data, (size_t)size);
    return 0;
}

/* ---- log ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *globals;  /* florgit.api.functions' globals: _rec and BUFFER_LIMIT, read per call */
    PyObject *slow;     /* the Python log: every case but a float or 64-bit int under a known name */
    vectorcallfunc vectorcall;
    /* The last recorder seen (weakly: a dead one never compares equal to a new one at its
     * address) and its `codes` dict and `records` bytearray, which a recorder sets once
     * (LoopBook._use_buffers) and keeps: read once per recorder, not per call. */
    PyObject *rec_ref, *codes, *records;
} Logger;

/* Sets *codes and *records to new references to rec's `codes` and `records`, read once per
 * recorder. -1 (no error set) where it has no such dict and bytearray (a disabled or a
 * forked child's recorder): the Python log handles that case. */
static int
logger_buffers_of(Logger *self, PyObject *rec, PyObject **codes, PyObject **records)
{
    if (self->rec_ref != NULL && PyWeakref_GET_OBJECT(self->rec_ref) == rec) {
        *codes = Py_NewRef(self->codes);
        *records = Py_NewRef(self->records);
        return 0;
    }
    *codes = PyObject_GetAttr(rec, s_codes);
    *records = *codes == NULL ? NULL : PyObject_GetAttr(rec, s_records);
    if (*records == NULL || !PyDict_CheckExact(*codes) || !PyByteArray_CheckExact(*records)) {
        Py_CLEAR(*codes);
        Py_CLEAR(*records);
        PyErr_Clear();
        return -1;
    }
    PyObject *ref = PyWeakref_NewRef(rec, NULL);
    if (ref == NULL) {  /* cannot be referred to weakly: used, not kept */
        PyErr_Clear();
        return 0;
    }
    Py_XSETREF(self->rec_ref, ref);
    Py_XSETREF(self->codes, Py_NewRef(*codes));
    Py_XSETREF(self->records, Py_NewRef(*records));
    return 0;
}

static PyObject *
logger_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Logger *self = (Logger *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *name, *value, *rec, *codes = NULL, *code = NULL, *buf = NULL, *ctx_obj = NULL, *limit, *result = NULL;
    int in_python = 0;  /* hand the call to the Python log after letting go of what is held */
    long long row[3];
    double number;
    Py_ssize_t size, bound;

    if (kwnames != NULL || nargs != 2 || !(PyFloat_CheckExact(args[1]) || PyLong_CheckExact(args[1])))
        return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
    name = args[0];
    value = args[1];
    rec = PyDict_GetItemWithError(self->globals, s_rec);
    if (rec == NULL || rec == Py_None) {
        if (PyErr_Occurred())
            return NULL;
        return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);  /* the first call of a run starts it */
    }
    Py_INCREF(rec);  /* held: a run ending meanwhile (another thread's commit) must not free it under us */
    if (logger_buffers_of(self, rec, &codes, &buf) < 0)
        goto python;
    code = PyDict_GetItemWithError(codes, name);
    if (code == NULL)
        goto python;  /* a new name (checked there), or an unhashable one (raised there) */
    Py_INCREF(code);
    ctx_obj = PyObject_GetAttr(rec, s_ctx);
    if (ctx_obj == NULL)
        goto python;
    row[0] = PyLong_AsLongLong(ctx_obj);
    row[1] = PyLong_AsLongLong(code);
    if (PyErr_Occurred())
        goto python;
    if (PyFloat_CheckExact(value)) {  /* <qqd: ctx, code (kind FLOAT_ROW, 0), the float's bits */
        number = PyFloat_AS_DOUBLE(value);
        memcpy(&row[2], &number, sizeof number);
    }
    else {  /* <qqq: ctx, code | INT_ROW, the int; one past 64 bits goes to the side list, in Python */
        int overflow;
        row[2] = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (row[2] == -1 && PyErr_Occurred()))
            goto python;
        row[1] |= INT_ROW;
    }
    if (append_bytes(buf, row, sizeof row) < 0)
        goto done;
    size = PyByteArray_GET_SIZE(buf);
    limit = PyDict_GetItemWithError(self->globals, s_limit);
    if (limit == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "florgit.api.functions.BUFFER_LIMIT is missing");
        goto done;
    }
    bound = PyLong_AsSsize_t(limit);
    if (bound == -1 && PyErr_Occurred())
        goto done;
    if (size > bound) {
        PyObject *drained = PyObject_CallMethodNoArgs(rec, s_drain);
        if (drained == NULL)
            goto done;
        Py_DECREF(drained);
    }
    result = Py_NewRef(value);
    goto done;

python:
    PyErr_Clear();
    in_python = 1;
done:
    Py_DECREF(rec);
    Py_XDECREF(codes);
    Py_XDECREF(code);
    Py_XDECREF(buf);
    Py_XDECREF(ctx_obj);
    return in_python ? PyObject_Vectorcall(self->slow, args, nargsf, kwnames) : result;
}

static PyObject *
logger_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *globals, *slow;
    if (!PyArg_ParseTuple(args, "O!O:Logger", &PyDict_Type, &globals, &slow))
        return NULL;
    Logger *self = (Logger *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->globals = Py_NewRef(globals);
    self->slow = Py_NewRef(slow);
    self->vectorcall = logger_call;
    return (PyObject *)self;
}

static int
logger_traverse(Logger *self, visitproc visit, void *arg)
{
    Py_VISIT(self->globals);
    Py_VISIT(self->slow);
    Py_VISIT(self->rec_ref);
    Py_VISIT(self->codes);
    Py_VISIT(self->records);
    return 0;
}

static int
logger_clear(Logger *self)
{
    Py_CLEAR(self->globals);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->rec_ref);
    Py_CLEAR(self->codes);
    Py_CLEAR(self->records);
    return 0;
}

static void
logger_dealloc(Logger *self)
{
    PyObject_GC_UnTrack(self);
    logger_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Everything else (__doc__, __name__, __wrapped__ for inspect.signature) is the Python log's. */
static PyObject *
logger_getattro(Logger *self, PyObject *attr)
{
    if (PyUnicode_Check(attr) && PyUnicode_CompareWithASCIIString(attr, "__class__") != 0 &&
        PyUnicode_CompareWithASCIIString(attr, "__wrapped__") != 0)
        return PyObject_GetAttr(self->slow, attr);
    return PyObject_GenericGetAttr((PyObject *)self, attr);
}

static PyObject *
logger_wrapped(Logger *self, void *closure)
{
    return Py_NewRef(self->slow);
}

static PyGetSetDef logger_getset[] = {
    {"__wrapped__", (getter)logger_wrapped, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject LoggerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "florgit.api._hotpath.Logger",
    .tp_basicsize = sizeof(Logger),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Logger, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = logger_new,
    .tp_traverse = (traverseproc)logger_traverse,
    .tp_clear = (inquiry)logger_clear,
    .tp_dealloc = (destructor)logger_dealloc,
    .tp_getattro = (getattrofunc)logger_getattro,
    .tp_getset = logger_getset,
};

/* ---- loop over range(n) ------------------------------------------------------------------ */

/* time.perf_counter(), read here without a call and a float object a step: the opener asks
 * for it (a None clock) only where perf_counter is clock_gettime(CLOCK_MONOTONIC), and the
 * nanoseconds become seconds as perf_counter makes them (_PyTime_AsSecondsDouble). */
static int
perf_counter(double *seconds)
{
#ifdef CLOCK_MONOTONIC
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    long long ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    volatile double d;  /* as CPython's: no excess precision changes the rounding */
    if (ns % 1000000000LL == 0) {
        d = (double)(ns / 1000000000LL);
    }
    else {
        d = (double)ns;
        d /= 1e9;
    }
    *seconds = d;
    return 0;
#else
    PyErr_SetString(PyExc_RuntimeError, "RangeSteps: no CLOCK_MONOTONIC here; pass time.perf_counter");
    return -1;
#endif
}

/* The loop's clock: the opener's, or perf_counter above when it gave None. */
static int
steps_clock(PyObject *clock, double *seconds)
{
    if (clock == Py_None)
        return perf_counter(seconds);
    PyObject *t = PyObject_CallNoArgs(clock);
    if (t == NULL)
        return -1;
    *seconds = PyFloat_AsDouble(t);
    Py_DECREF(t);
    return *seconds == -1.0 && PyErr_Occurred() ? -1 : 0;
}

typedef struct {
    PyObject_HEAD
    PyObject *rec;       /* the Recorder: its ctx is set per step, ctx and depth restored at the end */
    PyObject *opener;    /* called at the first step: the loop's buffers and ids, or an iterator to hand over to */
    PyObject *delegate;  /* that iterator (the Python generator), when the opener gave one */
    PyObject *starts, *ends, *next_ctx, *clock;
    long long loop_id, parent, depth, ctx;
    Py_ssize_t index, stop;
    int opened, finished;
} RangeSteps;

static int
steps_open(RangeSteps *self)
{
    PyObject *got = PyObject_CallNoArgs(self->opener);
    self->opened = 1;  /* once, as a generator's first step: if it raised, the loop is over */
    Py_CLEAR(self->opener);
    if (got == NULL) {
        self->finished = 1;
        return -1;
    }
    if (!PyTuple_Check(got)) {
        if (Py_TYPE(got)->tp_iternext == NULL) {
            PyErr_SetString(PyExc_TypeError, "RangeSteps: the opener gave neither the loop's buffers nor an iterator");
            Py_DECREF(got);
            self->finished = 1;
            return -1;
        }
        self->delegate = got;  /* a checkpointed loop: the generator does it all */
        return 0;
    }
    PyObject *starts, *ends, *next_ctx, *clock;
    long long loop_id, parent, depth;
    if (!PyArg_ParseTuple(got, "O!O!OOLLL:opener", &PyByteArray_Type, &starts, &PyList_Type, &ends, &next_ctx,
                          &clock, &loop_id, &parent, &depth)) {
        Py_DECREF(got);
        self->finished = 1;
        return -1;
    }
    if (Py_TYPE(next_ctx)->tp_iternext == NULL) {
        PyErr_SetString(PyExc_TypeError, "RangeSteps: the opener's context counter is not an iterator");
        Py_DECREF(got);
        self->finished = 1;
        return -1;
    }
    self->starts = Py_NewRef(starts);
    self->ends = Py_NewRef(ends);
    self->next_ctx = Py_NewRef(next_ctx);
    self->clock = Py_NewRef(clock);
    self->loop_id = loop_id;
    self->parent = parent;
    self->depth = depth;
    Py_DECREF(got);
    return 0;
}

/* What the generator's end does: the last iteration's end time, then the parent's ctx and depth. */
static int
steps_finish(RangeSteps *self)
{
    if (self->finished || !self->opened || self->delegate != NULL)
        return 0;
    self->finished = 1;
    int failed = 0;
    if (self->ctx) {
        double when;
        PyObject *end = steps_clock(self->clock, &when) < 0 ? NULL : Py_BuildValue("(Ld)", self->ctx, when);
        if (end == NULL || PyList_Append(self->ends, end) < 0)
            failed = 1;
        Py_XDECREF(end);
        self->ctx = 0;
    }
    PyObject *parent = PyLong_FromLongLong(self->parent), *depth = PyLong_FromLongLong(self->depth - 1);
    if (parent == NULL || depth == NULL || PyObject_SetAttr(self->rec, s_ctx, parent) < 0 ||
        PyObject_SetAttr(self->rec, s_depth, depth) < 0)
        failed = 1;
    Py_XDECREF(parent);
    Py_XDECREF(depth);
    return failed ? -1 : 0;
}

static PyObject *
steps_next(RangeSteps *self)
{
    if (!self->opened && steps_open(self) < 0)
        return NULL;
    if (self->delegate != NULL)
        return Py_TYPE(self->delegate)->tp_iternext(self->delegate);
    if (self->finished)
        return NULL;
    if (self->index >= self->stop) {
        steps_finish(self);
        return NULL;
    }
    /* The recorder's context counter (an itertools.count): stepped directly, not through a bound method. */
    PyObject *ctx_obj = Py_TYPE(self->next_ctx)->tp_iternext(self->next_ctx);
    if (ctx_obj == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "florgit: the context counter ran out");
        return NULL;
    }
    long long ctx = PyLong_AsLongLong(ctx_obj);
    double when;
    if ((ctx == -1 && PyErr_Occurred()) || steps_clock(self->clock, &when) < 0) {
        Py_DECREF(ctx_obj);
        return NULL;
    }
    long long row[4] = {ctx, self->loop_id, (long long)self->index, 0};
    memcpy(&row[3], &when, sizeof when);
    PyObject *item = PyLong_FromSsize_t(self->index);
    if (item == NULL || append_bytes(self->starts, row, sizeof row) < 0 || PyObject_SetAttr(self->rec, s_ctx, ctx_obj) < 0) {
        Py_XDECREF(item);
        Py_DECREF(ctx_obj);
        return NULL;
    }
    Py_DECREF(ctx_obj);
    self->ctx = ctx;
    self->index++;
    return item;
}

static PyObject *
steps_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *rec, *opener;
    Py_ssize_t stop;
    if (!PyArg_ParseTuple(args, "OOn:RangeSteps", &rec, &opener, &stop))
        return NULL;
    RangeSteps *self = (RangeSteps *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->rec = Py_NewRef(rec);
    self->opener = Py_NewRef(opener);
    self->stop = stop;
    return (PyObject *)self;
}

/* A loop left by break, return or an exception ends when its iterator goes, as the generator's `finally` does. */
static void
steps_finalize(RangeSteps *self)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (steps_finish(self) < 0)
        PyErr_WriteUnraisable((PyObject *)self);
    PyErr_Restore(type, value, tb);
}

static int
steps_traverse(RangeSteps *self, visitproc visit, void *arg)
{
    Py_VISIT(self->rec);
    Py_VISIT(self->opener);
    Py_VISIT(self->delegate);
    Py_VISIT(self->starts);
    Py_VISIT(self->ends);
    Py_VISIT(self->next_ctx);
    Py_VISIT(self->clock);
    return 0;
}

static int
steps_clear(RangeSteps *self)
{
    Py_CLEAR(self->rec);
    Py_CLEAR(self->opener);
    Py_CLEAR(self->delegate);
    Py_CLEAR(self->starts);
    Py_CLEAR(self->ends);
    Py_CLEAR(self->next_ctx);
    Py_CLEAR(self->clock);
    return 0;
}

static void
steps_dealloc(RangeSteps *self)
{
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0)
        return;  /* resurrected */
    PyObject_GC_UnTrack(self);
    steps_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
steps_close(RangeSteps *self, PyObject *unused)
{
    if (self->delegate != NULL) {
        PyObject *delegate = self->delegate;
        self->delegate = NULL;
        PyObject *done = PyObject_CallMethod(delegate, "close", NULL);
        Py_DECREF(delegate);
        self->finished = 1;
        return done;
    }
    if (steps_finish(self) < 0)
        return NULL;
    self->finished = 1;
    Py_CLEAR(self->opener);  /* never opened: never opens */
    self->opened = 1;
    Py_RETURN_NONE;
}

static PyMethodDef steps_methods[] = {
    {"close", (PyCFunction)steps_close, METH_NOARGS, "End the loop now, as closing its generator would."},
    {NULL},
};

static PyTypeObject RangeStepsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "florgit.api._hotpath.RangeSteps",
    .tp_basicsize = sizeof(RangeSteps),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The steps of flor.loop over range(n), recorded as Recorder.loop's generator records them.",
    .tp_new = steps_new,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)steps_next,
    .tp_traverse = (traverseproc)steps_traverse,
    .tp_clear = (inquiry)steps_clear,
    .tp_dealloc = (destructor)steps_dealloc,
    .tp_finalize = (destructor)steps_finalize,
    .tp_methods = steps_methods,
};

/* ---- taking the rows a buffer holds ------------------------------------------------------- */

/* take_rows(buf, size): what codec.unpacked.take_bytes returns (the whole rows of `size`
 * bytes in `buf`, removed from it), without copying them: when `buf` holds only whole rows,
 * which it always does as each row is appended in one step, its memory moves to the new
 * bytearray returned and `buf` is left empty, the same object (the hot path holds it).
 * Otherwise, or while something views `buf`, it does what take_bytes does. */
static PyObject *
take_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyByteArray_CheckExact(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "take_rows(buf: bytearray, size: int)");
        return NULL;
    }
    PyByteArrayObject *buf = (PyByteArrayObject *)args[0];
    Py_ssize_t row = PyLong_AsSsize_t(args[1]);
    if (row <= 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "take_rows: the row size must be positive");
        return NULL;
    }
    Py_ssize_t size = Py_SIZE(buf), whole = size - size % row;
    if (whole == size && buf->ob_exports == 0) {
        PyByteArrayObject *rows = (PyByteArrayObject *)PyByteArray_FromStringAndSize(NULL, 0);
        if (rows == NULL)
            return NULL;
        /* rows is new and empty (no memory of its own): the two swap their memory. */
        Py_ssize_t alloc = rows->ob_alloc;
        char *bytes = rows->ob_bytes, *start = rows->ob_start;
        rows->ob_alloc = buf->ob_alloc;
        rows->ob_bytes = buf->ob_bytes;
        rows->ob_start = buf->ob_start;
        Py_SET_SIZE(rows, size);
        buf->ob_alloc = alloc;
        buf->ob_bytes = bytes;
        buf->ob_start = start;
        Py_SET_SIZE(buf, 0);
        return (PyObject *)rows;
    }
    PyObject *rows = PySequence_GetSlice(args[0], 0, whole);
    if (rows == NULL || PySequence_DelSlice(args[0], 0, whole) < 0) {
        Py_XDECREF(rows);
        return NULL;
    }
    return rows;
}

static PyMethodDef hotpath_functions[] = {
    {"take_rows", (PyCFunction)(void (*)(void))take_rows, METH_FASTCALL, "The whole rows a bytearray holds, removed from it (codec.unpacked.take_bytes), without a copy."},
    {NULL},
};

/* ---- module ------------------------------------------------------------------------------- */

static struct PyModuleDef hotpath_module = {
    PyModuleDef_HEAD_INIT, "florgit.api._hotpath", "florgit's recording hot path in C (see the source's comment).", -1, hotpath_functions,
};

PyMODINIT_FUNC
PyInit__hotpath(void)
{
    if ((s_rec = PyUnicode_InternFromString("_rec")) == NULL || (s_codes = PyUnicode_InternFromString("codes")) == NULL ||
        (s_records = PyUnicode_InternFromString("records")) == NULL || (s_ctx = PyUnicode_InternFromString("ctx")) == NULL ||
        (s_depth = PyUnicode_InternFromString("depth")) == NULL ||
        (s_limit = PyUnicode_InternFromString("BUFFER_LIMIT")) == NULL ||
        (s_drain = PyUnicode_InternFromString("drain")) == NULL)
        return NULL;
    if (PyType_Ready(&LoggerType) < 0 || PyType_Ready(&RangeStepsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&hotpath_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Logger", (PyObject *)&LoggerType) < 0 ||
        PyModule_AddObjectRef(m, "RangeSteps", (PyObject *)&RangeStepsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
