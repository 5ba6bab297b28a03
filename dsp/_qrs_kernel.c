/*
 * Compiled inner loops of dsp.qrs.QrsDetector (optional: the detector falls back to numpy).
 *
 * The detector keeps its history in one C-contiguous float64 array of 6 rows of ``cap``
 * samples: the QRS-band signal f, its |slope| d, the running sum of d, the feature e (moving
 * average of d over w samples), the 0.5-40 Hz signal amp and its |slope|. Each function here
 * does, sample for sample and in the same floating-point order, what the numpy code in
 * dsp/qrs.py does, so both give bit-identical beats (tests/dsp/test_qrs_kernel.py checks).
 * A one-second block is a few hundred samples: what these save is numpy's per-call cost.
 *
 * No state, no I/O, no allocation beyond the returned Python objects.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

enum { ROW_F, ROW_D, ROW_CSUM, ROW_E, ROW_AMP, ROW_AMP_SLOPE, N_ROWS };

/* The history buffer, checked: writable, contiguous, 6 x cap doubles. */
static double *history(Py_buffer *view, Py_ssize_t cap) {
    if (cap <= 0 || view->len < (Py_ssize_t)(N_ROWS * cap * sizeof(double))) {
        PyErr_SetString(PyExc_ValueError, "history buffer smaller than 6 x cap float64");
        return NULL;
    }
    return (double *)view->buf;
}

static int in_range(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t cap) {
    if (lo < 0 || hi > cap || lo > hi) {
        PyErr_SetString(PyExc_IndexError, "index range outside the history buffer");
        return 0;
    }
    return 1;
}

/* numpy's argmax over x[0:n]: the first NaN if any, else the first occurrence of the max. */
static Py_ssize_t argmax(const double *x, Py_ssize_t n, int absolute) {
    Py_ssize_t best = 0;
    double m = absolute ? fabs(x[0]) : x[0];
    if (isnan(m)) return 0;
    for (Py_ssize_t i = 1; i < n; i++) {
        double v = absolute ? fabs(x[i]) : x[i];
        if (isnan(v)) return i;
        if (v > m) {
            m = v;
            best = i;
        }
    }
    return best;
}

/* Slope, running sum, feature and amp slope for samples [h, h + n). */
static void feature_loop(double *buf, Py_ssize_t cap, Py_ssize_t h, Py_ssize_t n, Py_ssize_t w,
                         int fresh) {
    double *f = buf + ROW_F * cap, *d = buf + ROW_D * cap, *cs = buf + ROW_CSUM * cap;
    double *e = buf + ROW_E * cap, *amp = buf + ROW_AMP * cap, *as = buf + ROW_AMP_SLOPE * cap;
    const double wf = (double)w;
    if (fresh && n > 0) f[h - 1] = f[h];
    for (Py_ssize_t i = h; i < h + n; i++) {
        double di = fabs(f[i] - f[i - 1]);
        d[i] = di;
        cs[i] = cs[i - 1] + di;
        e[i] = (cs[i] - cs[i - w]) / wf;
        as[i] = fabs(amp[i] - amp[i - 1]);
    }
}

PyDoc_STRVAR(feature_doc,
             "feature(buf, cap, h, n, w, fresh)\n\n"
             "Slope, running sum, feature and amp slope for samples [h, h + n) of the history\n"
             "(the filters have written f and amp there). ``fresh``: the first sample of a\n"
             "segment, whose slope is 0.");

static PyObject *feature(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t cap, h, n, w;
    int fresh;
    if (!PyArg_ParseTuple(args, "w*nnnnp", &view, &cap, &h, &n, &w, &fresh)) return NULL;
    double *buf = history(&view, cap);
    if (buf == NULL || !in_range(h - (w > 1 ? w : 1), h + n, cap)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    feature_loop(buf, cap, h, n, w, fresh);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(peaks_doc,
             "peaks(buf, cap, a, b, r, first, stop) -> list[int]\n\n"
             "Indices i in [a, b) where the feature rises strictly into i, is above 0, and is\n"
             "the largest of e[max(i - r, first) : min(i + r + 1, stop)]. For finite e only;\n"
             "needs first < a and b < stop.");

/* Candidate peaks in [a, b) of the feature e (see peaks()), or NULL with an exception. */
static PyObject *peak_list(const double *e, Py_ssize_t a, Py_ssize_t b, Py_ssize_t r,
                           Py_ssize_t first, Py_ssize_t stop) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = a; i < b; i++) {
        const double v = e[i];
        /* the largest of its window is not below its right neighbour: test that first */
        if (!(v > e[i - 1]) || !(v > 0.0) || !(v >= e[i + 1])) continue;
        Py_ssize_t lo = i - r < first ? first : i - r;
        Py_ssize_t hi = i + r + 1 > stop ? stop : i + r + 1;
        int top = 1;
        for (Py_ssize_t j = lo; j < hi; j++) {
            if (e[j] > v) {
                top = 0;
                break;
            }
        }
        if (!top) continue;
        PyObject *idx = PyLong_FromSsize_t(i);
        if (idx == NULL || PyList_Append(out, idx) < 0) {
            Py_XDECREF(idx);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(idx);
    }
    return out;
}

/* The window bounds peaks() needs, or 0 with an IndexError. */
static int peak_bounds(Py_ssize_t cap, Py_ssize_t a, Py_ssize_t b, Py_ssize_t r, Py_ssize_t first,
                       Py_ssize_t stop) {
    /* ``first`` (the segment's first sample) may lie before the buffer; windows never do */
    if (stop > cap || a - r < 0 || a < 1 || a <= first || b >= stop || a > b) {
        PyErr_SetString(PyExc_IndexError, "peaks needs first < a <= b < stop <= cap, a >= r");
        return 0;
    }
    return 1;
}

static PyObject *peaks(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t cap, a, b, r, first, stop;
    if (!PyArg_ParseTuple(args, "w*nnnnnn", &view, &cap, &a, &b, &r, &first, &stop)) return NULL;
    double *buf = history(&view, cap);
    PyObject *out = NULL;
    if (buf != NULL && peak_bounds(cap, a, b, r, first, stop))
        out = peak_list(buf + ROW_E * cap, a, b, r, first, stop);
    PyBuffer_Release(&view);
    return out;
}

PyDoc_STRVAR(candidate_doc,
             "candidate(buf, cap, lo, hi, frac) -> (r_rel, amplitude, width, slope, peak)\n\n"
             "Measure the window [lo, hi) that produced the energy peak at hi - 1: the largest\n"
             "|amp| (its offset from lo and value), the span (samples) where amp's slope exceeds\n"
             "``frac`` of its steepest, the steepest QRS-band slope, and the feature at the peak.");

static PyObject *candidate(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t cap, lo, hi;
    double frac;
    if (!PyArg_ParseTuple(args, "w*nnnd", &view, &cap, &lo, &hi, &frac)) return NULL;
    double *buf = history(&view, cap);
    if (buf == NULL || !in_range(lo, hi, cap) || hi - lo < 1) {
        if (buf != NULL && !PyErr_Occurred())
            PyErr_SetString(PyExc_IndexError, "candidate needs a window of at least 1 sample");
        PyBuffer_Release(&view);
        return NULL;
    }
    const double *amp = buf + ROW_AMP * cap, *as = buf + ROW_AMP_SLOPE * cap;
    const double *d = buf + ROW_D * cap, *e = buf + ROW_E * cap;
    const Py_ssize_t n = hi - lo;
    const Py_ssize_t r_rel = argmax(amp + lo, n, 1);
    double width = 0.0;
    if (n > 1) {
        const double *slope = as + lo + 1;
        const double thr = frac * slope[argmax(slope, n - 1, 0)];
        Py_ssize_t first = -1, last = -1;
        for (Py_ssize_t i = 0; i < n - 1; i++) {
            if (slope[i] > thr) {
                if (first < 0) first = i;
                last = i;
            }
        }
        if (first >= 0) width = (double)(last - first + 1);
    }
    const double steepest = d[lo + argmax(d + lo, n, 0)];
    PyObject *res = Py_BuildValue("ndddd", r_rel, amp[lo + r_rel], width, steepest, e[hi - 1]);
    PyBuffer_Release(&view);
    return res;
}


/* One sample x through sections [from, to) of an SOS cascade (state z updated): scipy's
 * transposed direct form II, operation for operation. */
static inline double sections(const double *sos, double *z, Py_ssize_t from, Py_ssize_t to,
                              double x) {
    for (Py_ssize_t t = from; t < to; t++) {
        const double *c = sos + 6 * t;
        double *zs = z + 2 * t;
        const double y = c[0] * x + zs[0];
        zs[0] = c[1] * x - c[4] * y + zs[1];
        zs[1] = c[2] * x - c[5] * y;
        x = y;
    }
    return x;
}

/* Two SOS cascades over the same input x[0:n], into ya and yb, states za and zb (sections x 2)
 * updated in place. Each is scipy.signal.sosfilt's recurrence (transposed direct form II)
 * operation for operation; the two independent recurrences are interleaved so that the
 * processor overlaps their latencies (about twice as fast as one after the other). */
static void sosfilt_pair(const double *sa, Py_ssize_t na, double *za, double *ya,
                         const double *sb, Py_ssize_t nb, double *zb, double *yb,
                         const double *x, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        double a_cur = x[i], b_cur = x[i];
        Py_ssize_t s = 0;
        for (; s < na && s < nb; s++) {
            const double *ca = sa + 6 * s, *cb = sb + 6 * s;
            double *zas = za + 2 * s, *zbs = zb + 2 * s;
            const double a_new = ca[0] * a_cur + zas[0];
            const double b_new = cb[0] * b_cur + zbs[0];
            zas[0] = ca[1] * a_cur - ca[4] * a_new + zas[1];
            zbs[0] = cb[1] * b_cur - cb[4] * b_new + zbs[1];
            zas[1] = ca[2] * a_cur - ca[5] * a_new;
            zbs[1] = cb[2] * b_cur - cb[5] * b_new;
            a_cur = a_new;
            b_cur = b_new;
        }
        a_cur = sections(sa, za, s, na, a_cur);  /* the longer cascade's remaining sections */
        b_cur = sections(sb, zb, s, nb, b_cur);
        ya[i] = a_cur;
        yb[i] = b_cur;
    }
}

/* A read-only float64 SOS array (sections x 6) and its writable state (sections x 2). */
static int sos_args(Py_buffer *sos, Py_buffer *z, Py_ssize_t *n_sections) {
    if (sos->len % (Py_ssize_t)(6 * sizeof(double)) != 0 || sos->len == 0 ||
        z->len != sos->len / 3) {
        PyErr_SetString(PyExc_ValueError, "sos must be (sections, 6) and zi (sections, 2) float64");
        return 0;
    }
    *n_sections = sos->len / (Py_ssize_t)(6 * sizeof(double));
    return 1;
}

PyDoc_STRVAR(front_doc,
             "front(buf, cap, done, h, n, w, fresh, x, qrs_sos, qrs_zi, amp_sos, amp_zi,\n"
             "      a, b, r, first) -> list[int] | None\n\n"
             "One block into the history: move the last h samples of the previous block (of\n"
             "``done`` samples) to the front, filter x (n float64) into f and amp with the two\n"
             "SOS cascades (states updated in place), then :func:`feature`; return\n"
             "peaks(buf, cap, a, b, r, first, h + n) ([] when b <= a), or None when the running\n"
             "sum is no longer finite (NaN or inf in the segment: the caller searches itself).");

static PyObject *front(PyObject *self, PyObject *args) {
    Py_buffer view, xv, qs, qz, as_, az;
    Py_ssize_t cap, done, h, n, w, nq, na, a, b, r, first;
    int fresh;
    if (!PyArg_ParseTuple(args, "w*nnnnnpy*y*w*y*w*nnnn", &view, &cap, &done, &h, &n, &w, &fresh,
                          &xv, &qs, &qz, &as_, &az, &a, &b, &r, &first))
        return NULL;
    PyObject *result = NULL;
    double *buf = history(&view, cap);
    if (buf == NULL || !sos_args(&qs, &qz, &nq) || !sos_args(&as_, &az, &na)) goto done;
    if (xv.len != (Py_ssize_t)(n * sizeof(double)) || done < 0 || !in_range(done, done + h, cap) ||
        !in_range(h - (w > 1 ? w : 1), h + n, cap)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "x must hold n float64");
        goto done;
    }
    if (done) {
        for (int row = 0; row < N_ROWS; row++)
            memmove(buf + row * cap, buf + row * cap + done, (size_t)h * sizeof(double));
    }
    const double *x = (const double *)xv.buf;
    sosfilt_pair((const double *)qs.buf, nq, (double *)qz.buf, buf + ROW_F * cap + h,
                 (const double *)as_.buf, na, (double *)az.buf, buf + ROW_AMP * cap + h, x, n);
    feature_loop(buf, cap, h, n, w, fresh);
    if (b <= a) {
        result = PyList_New(0);
    } else if (!isfinite(buf[ROW_CSUM * cap + h + n - 1])) {
        Py_INCREF(Py_None);
        result = Py_None;
    } else if (peak_bounds(cap, a, b, r, first, h + n)) {
        result = peak_list(buf + ROW_E * cap, a, b, r, first, h + n);
    }
done:
    PyBuffer_Release(&view);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&qs);
    PyBuffer_Release(&qz);
    PyBuffer_Release(&as_);
    PyBuffer_Release(&az);
    return result;
}

PyDoc_STRVAR(sosfilt2_doc,
             "sosfilt2(sos_a, zi_a, sos_b, zi_b, x, y_a, y_b)\n\n"
             "y_a[:] and y_b[:] = x filtered by two SOS cascades (float64), states updated in\n"
             "place: what front() does (dsp.qrs checks it against scipy bit for bit).");

static PyObject *sosfilt2(PyObject *self, PyObject *args) {
    Py_buffer sa, za, sb, zb, xv, ya, yb;
    Py_ssize_t na, nb;
    if (!PyArg_ParseTuple(args, "y*w*y*w*y*w*w*", &sa, &za, &sb, &zb, &xv, &ya, &yb))
        return NULL;
    PyObject *result = NULL;
    if (sos_args(&sa, &za, &na) && sos_args(&sb, &zb, &nb)) {
        if (xv.len != ya.len || xv.len != yb.len || xv.len % (Py_ssize_t)sizeof(double) != 0) {
            PyErr_SetString(PyExc_ValueError, "x, y_a and y_b must be float64 of one length");
        } else {
            sosfilt_pair((const double *)sa.buf, na, (double *)za.buf, (double *)ya.buf,
                         (const double *)sb.buf, nb, (double *)zb.buf, (double *)yb.buf,
                         (const double *)xv.buf, xv.len / (Py_ssize_t)sizeof(double));
            Py_INCREF(Py_None);
            result = Py_None;
        }
    }
    PyBuffer_Release(&sa);
    PyBuffer_Release(&za);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&zb);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&ya);
    PyBuffer_Release(&yb);
    return result;
}

PyDoc_STRVAR(sosfilt_doc,
             "sosfilt(sos, zi, y)\n\n"
             "Filter y (channels, n) float64 C-contiguous in place with one SOS cascade\n"
             "(sections, 6); zi (channels, sections, 2) is each channel's state, updated in\n"
             "place. The transposed direct form II of sections(): what dsp.sos uses.");

static PyObject *sosfilt(PyObject *self, PyObject *args) {
    Py_buffer sv, zv, yv;
    if (!PyArg_ParseTuple(args, "y*w*w*", &sv, &zv, &yv)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t row = (Py_ssize_t)(6 * sizeof(double));
    if (sv.len == 0 || sv.len % row != 0 || zv.len % (sv.len / 3) != 0 ||
        yv.len % (Py_ssize_t)sizeof(double) != 0) {
        PyErr_SetString(PyExc_ValueError, "sos (sections, 6), zi (channels, sections, 2), y float64");
        goto done;
    }
    const Py_ssize_t ns = sv.len / row, channels = zv.len / (sv.len / 3);
    const Py_ssize_t total = yv.len / (Py_ssize_t)sizeof(double);
    if (channels == 0 || total % channels != 0) {
        PyErr_SetString(PyExc_ValueError, "y must be (channels, n) for zi's channels");
        goto done;
    }
    const Py_ssize_t n = total / channels;
    const double *sos = (const double *)sv.buf;
    for (Py_ssize_t ch = 0; ch < channels; ch++) {
        double *y = (double *)yv.buf + ch * n, *z = (double *)zv.buf + ch * 2 * ns;
        for (Py_ssize_t i = 0; i < n; i++) y[i] = sections(sos, z, 0, ns, y[i]);
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&sv);
    PyBuffer_Release(&zv);
    PyBuffer_Release(&yv);
    return result;
}

static PyMethodDef methods[] = {
    {"sosfilt", sosfilt, METH_VARARGS, sosfilt_doc},
    {"feature", feature, METH_VARARGS, feature_doc},
    {"front", front, METH_VARARGS, front_doc},
    {"sosfilt2", sosfilt2, METH_VARARGS, sosfilt2_doc},
    {"peaks", peaks, METH_VARARGS, peaks_doc},
    {"candidate", candidate, METH_VARARGS, candidate_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "dsp._qrs_kernel",
    "Compiled inner loops of the streaming QRS detector (see dsp/qrs.py).",
    -1,
    methods,
};

PyMODINIT_FUNC PyInit__qrs_kernel(void) { return PyModule_Create(&module); }
