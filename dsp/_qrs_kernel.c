/*
 * Compiled inner loops of dsp.qrs.QrsDetector (optional: the detector falls back to numpy).
 *
 * The detector keeps its history in one C-contiguous float64 array of 6 rows of ``cap``
 * samples: the QRS-band signal f, its |slope| d, the running sum of d, the feature e (moving
 * average of d over w samples), the 0.5-40 Hz signal amp and its |slope|. Each function here
 * does, sample for sample and in the same floating-point order, what the numpy code in
 * dsp/qrs.py does, so both give bit-identical beats (tests/dsp/test_qrs_kernel.py checks).
 * A one-second block is a few hundred samples: what these save is numpy's per-call cost.
 * The decisions (dsp/qrs_decide.py) are here too, as a Decider object, and front() can hand
 * a block's candidates straight to one: no Python object per candidate or per beat.
 *
 * No I/O. The only state is a Decider's; the functions allocate nothing beyond the returned
 * Python objects.
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

/* Release every buffer of a NULL-terminated list (the views a function parsed). */
static void release_all(Py_buffer *const *views) {
    for (; *views != NULL; views++) PyBuffer_Release(*views);
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

/* The first candidate peak in [i, b) of the feature e (see peaks()), or b if none. */
static Py_ssize_t next_peak(const double *e, Py_ssize_t i, Py_ssize_t b, Py_ssize_t r,
                            Py_ssize_t first, Py_ssize_t stop) {
    for (; i < b; i++) {
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
        if (top) return i;
    }
    return b;
}

/* Candidate peaks in [a, b) of the feature e (see peaks()), or NULL with an exception. */
static PyObject *peak_list(const double *e, Py_ssize_t a, Py_ssize_t b, Py_ssize_t r,
                           Py_ssize_t first, Py_ssize_t stop) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = next_peak(e, a, b, r, first, stop); i < b;
         i = next_peak(e, i + 1, b, r, first, stop)) {
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

/* What candidate() returns: the measurements of one candidate's window. */
typedef struct {
    Py_ssize_t r_rel; /* offset of the largest |amp| from lo */
    double amplitude, width, slope, peak;
} Measured;

/* Measure the window [lo, hi) of the history (0 <= lo < hi <= cap, checked by the caller). */
static Measured measure(const double *buf, Py_ssize_t cap, Py_ssize_t lo, Py_ssize_t hi,
                        double frac) {
    const double *amp = buf + ROW_AMP * cap, *as = buf + ROW_AMP_SLOPE * cap;
    const double *d = buf + ROW_D * cap, *e = buf + ROW_E * cap;
    const Py_ssize_t n = hi - lo;
    Measured m;
    m.r_rel = argmax(amp + lo, n, 1);
    m.amplitude = amp[lo + m.r_rel];
    m.width = 0.0;
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
        if (first >= 0) m.width = (double)(last - first + 1);
    }
    m.slope = d[lo + argmax(d + lo, n, 0)];
    m.peak = e[hi - 1];
    return m;
}

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
    const Measured m = measure(buf, cap, lo, hi, frac);
    PyBuffer_Release(&view);
    return Py_BuildValue("ndddd", m.r_rel, m.amplitude, m.width, m.slope, m.peak);
}

/* ---------------------------------------------------------------------------------------
 * The detector's decisions: dsp.qrs_decide.QrsDecider, whose module docstring states the
 * rules. The same rules, candidate by candidate, with the same comparisons and the same
 * floating-point operations in the same order, so both accept the same beats with the same
 * numbers (tests/dsp/test_qrs_kernel.py feeds both the same candidate streams and whole
 * MIT-BIH records). Each function names the Python method it mirrors.
 *
 * The state is a Decider object: the rules' constants, fixed-size histories (levels, RR
 * intervals, widths) and three growable lists: the learning period's candidates (one per
 * sample at most), the noise candidates a search-back may still take (those in [deadline -
 * window, deadline]: at most window + 1, see noise()) and the accepted beats the caller
 * has not taken yet. Sample indices are int64 and must stay within +/- 2^62 (so that no
 * difference or deadline overflows); candidates must come in sample order.
 * ------------------------------------------------------------------------------------- */

enum { HISTORY_MAX = 32 };            /* longest level, width or RR history */
#define INDEX_MAX (1LL << 62)         /* |sample index| allowed */
#define CONSTANT_MAX (1LL << 40)      /* largest rule constant, samples */

typedef struct { /* dsp.qrs_decide.Candidate */
    long long idx;    /* sample index of the energy peak */
    double peak;      /* feature value at the peak */
    double slope;     /* steepest QRS-band slope in its window */
    long long r_idx;  /* R-peak location */
    double amplitude; /* mV at r_idx (0.5-40 Hz signal) */
    double width;     /* samples of steep slope around R */
} Candidate;

typedef struct { /* an accepted candidate, as dsp.qrs.Beats reports it */
    long long seq;
    double amplitude_mv, rr_s, width_s;
    char ventricular;
} Beat;

/* A growable list of candidates; items [first, end) are held (dropping the oldest moves
 * first, so that a search-back's "later" list is a suffix). */
typedef struct {
    Candidate *item;
    Py_ssize_t first, end, cap;
} Candidates;

typedef struct { /* a growable list of beats */
    Beat *item;
    Py_ssize_t n, cap;
} Beats;

/* Room for one more item in a list of ``cap`` items of ``size`` bytes (doubled when full). */
static int reserve(void **items, Py_ssize_t *cap, Py_ssize_t used, size_t size) {
    if (used < *cap) return 0;
    const Py_ssize_t grown = *cap ? 2 * *cap : 16;
    void *p = PyMem_Realloc(*items, (size_t)grown * size);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *items = p;
    *cap = grown;
    return 0;
}

static int candidates_push(Candidates *l, const Candidate *c) {
    if (l->end == l->cap && l->first > 0) { /* full: first move the held ones to the front */
        memmove(l->item, l->item + l->first, (size_t)(l->end - l->first) * sizeof(Candidate));
        l->end -= l->first;
        l->first = 0;
    }
    if (reserve((void **)&l->item, &l->cap, l->end, sizeof(Candidate)) < 0) return -1;
    l->item[l->end++] = *c;
    return 0;
}

static void candidates_clear(Candidates *l) { l->first = l->end = 0; }

/* --- dsp.qrs_decide.RunningMedian --------------------------------------------------------
 * The last ``size`` values in arrival order, and the same values in a list kept sorted by
 * Python's bisect.insort (insertion after equal values) with the oldest removed at
 * bisect_left: the same operations, so even a NaN would land, and be removed, as there. */
typedef struct {
    int size, n, oldest;              /* capacity, values held, ring index of the oldest */
    double order[HISTORY_MAX];        /* arrival order: a ring */
    double sorted[HISTORY_MAX + 1];   /* one more: the new value goes in before the oldest goes */
} RunningMedian;

/* bisect.bisect_right(a[0:n], x) (where insort puts x). */
static int bisect_right(const double *a, int n, double x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (x < a[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* bisect.bisect_left(a[0:n], x). */
static int bisect_left(const double *a, int n, double x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* RunningMedian.append: insort the value; past ``size`` values, delete the oldest from the
 * sorted list where bisect_left finds it (IndexError, as Python's del, if that is past the
 * end: only possible with NaNs in the list). */
static int median_append(RunningMedian *m, double v) {
    double *s = m->sorted;
    const int len = m->n, at = bisect_right(s, len, v);
    memmove(s + at + 1, s + at, (size_t)(len - at) * sizeof(double));
    s[at] = v;
    if (len < m->size) {
        m->order[(m->oldest + len) % m->size] = v;
        m->n = len + 1;
        return 0;
    }
    const double old = m->order[m->oldest]; /* popleft, then append v */
    m->order[m->oldest] = v;
    m->oldest = (m->oldest + 1) % m->size;
    const int gone = bisect_left(s, len + 1, old);
    if (gone == len + 1) {
        PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
        return -1;
    }
    memmove(s + gone, s + gone + 1, (size_t)(len - gone) * sizeof(double));
    return 0;
}

/* RunningMedian.scale: every value times ``factor``. */
static void median_scale(RunningMedian *m, double factor) {
    for (int i = 0; i < m->n; i++) {
        m->order[(m->oldest + i) % m->size] *= factor;
        m->sorted[i] *= factor;
    }
}

/* The median of v[0:n], sorted: the middle value, or the mean of the middle two; 0.0 when
 * empty (RunningMedian.median, dsp.af's _Window.median). */
static double sorted_median(const double *v, int n) {
    if (!n) return 0.0;
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* RunningMedian.median */
static double median_of(const RunningMedian *m) { return sorted_median(m->sorted, m->n); }

static void median_clear(RunningMedian *m) { m->n = m->oldest = 0; }

/* --- the decider ----------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    /* the rules' constants: QrsDecider's attributes (samples) and module constants */
    double fs;
    long long refractory, t_wave, learn, rr_cap, window;
    double threshold, searchback_rr, wide;
    int rr_history;
    PyObject *learnt_levels; /* dsp.qrs_decide.learnt_levels: rule 1's levels, by numpy */
    /* kept from segment to segment */
    int trained;
    RunningMedian sig, noi; /* recent QRS and noise peak levels */
    /* this segment's (new_segment) */
    long long start, newest; /* first sample; index of the newest candidate (order check) */
    int has_newest;
    Candidates learning, noise; /* _learning; _noise_since_beat (what a search-back may take) */
    int has_last;               /* _last_beat and _last_r are set */
    long long last_beat, last_r;
    double last_slope;
    long long rr[HISTORY_MAX]; /* _rr: the last rr_history intervals, oldest first */
    int rr_n;
    RunningMedian widths; /* QRS widths of the last beats */
    int has_deadline;
    long long deadline;
    Beats out; /* accepted, not yet taken */
} Decider;

/* QrsDecider.new_segment: beat history forgotten, the learnt levels kept. */
static void new_segment(Decider *d, long long start) {
    d->start = start;
    d->has_newest = 0;
    candidates_clear(&d->learning);
    candidates_clear(&d->noise);
    d->has_last = 0;
    d->last_slope = 0.0;
    d->rr_n = 0;
    median_clear(&d->widths);
    d->has_deadline = 0;
}

/* QrsDecider.thr1, rule 2: NPK + 0.3125 (SPK - NPK) from the median levels. */
static double thr1(const Decider *d) {
    const double spk = median_of(&d->sig), npk = median_of(&d->noi);
    return npk + d->threshold * (spk - npk);
}

/* min(mean of the last RR intervals, rr_cap) as _accept computes it in Python: ``sum(rr) /
 * len(rr)`` divides the exact integer sum, correctly rounded, as one IEEE division does
 * while the sum is below 2^53. Intervals are positive, so once the partial sum reaches
 * rr_cap * n the mean is at least rr_cap, and min() gives rr_cap's value either way (a mean
 * of exactly rr_cap is the same number). With no interval the mean is fs. */
static double capped_mean_rr(const Decider *d) {
    const double cap = (double)d->rr_cap;
    if (!d->rr_n) return cap < d->fs ? cap : d->fs;
    const long long limit = d->rr_cap * d->rr_n;
    long long sum = 0;
    for (int i = 0; i < d->rr_n; i++) {
        if (d->rr[i] >= limit - sum) return cap;
        sum += d->rr[i];
    }
    const double mean = (double)sum / (double)d->rr_n;
    return cap < mean ? cap : mean;
}

/* QrsDecider._noise: a noise peak feeds the noise level, and is kept for a search-back. Only
 * candidates a search-back can still take are kept: none before the first beat (no deadline
 * yet, and the first beat forgets them), and none before deadline - window. Proof that this
 * changes no decision: between two beats the deadline only grows (a failed search-back
 * moves it on), so a pool's oldest index (deadline - window) only grows; the next beat is
 * either a candidate decided after these (the noise is then forgotten) or a search-back's
 * pick, at or after that pool's oldest index, and only candidates after it stay. */
static int noise(Decider *d, const Candidate *c) {
    if (median_append(&d->noi, c->peak) < 0) return -1;
    if (!d->has_deadline) return 0;
    Candidates *l = &d->noise;
    while (l->first < l->end && l->item[l->first].idx < d->deadline - d->window) l->first++;
    return candidates_push(l, c);
}

/* QrsDecider._accept: the candidate is a beat; update the RR and width histories, report it
 * (RR from the previous R peak, ventricular when much wider than the median of the last
 * widths, rule 6) and set the search-back deadline (rule 5). */
static int accept(Decider *d, const Candidate *c) {
    double rr = NAN;
    if (d->has_last) {
        if (d->rr_n == d->rr_history) {
            memmove(d->rr, d->rr + 1, (size_t)(d->rr_n - 1) * sizeof(long long));
            d->rr_n--;
        }
        d->rr[d->rr_n++] = c->idx - d->last_beat;
        rr = (double)(c->r_idx - d->last_r);
    }
    const char wide = d->widths.n >= 4 && c->width > d->wide * median_of(&d->widths);
    if (median_append(&d->widths, c->width) < 0) return -1;
    d->has_last = 1;
    d->last_beat = c->idx;
    d->last_r = c->r_idx;
    d->last_slope = c->slope;
    d->noise.first = d->noise.end; /* _noise_since_beat = [] */
    d->deadline = c->idx + (long long)ceil(d->searchback_rr * capped_mean_rr(d));
    d->has_deadline = 1;
    Beats *o = &d->out;
    if (reserve((void **)&o->item, &o->cap, o->n, sizeof(Beat)) < 0) return -1;
    o->item[o->n++] = (Beat){c->r_idx, c->amplitude, rr / d->fs, c->width / d->fs, wide};
    return 0;
}

/* QrsDecider._decide: refractory (rule 3), threshold (rule 2), T wave (rule 4). */
static int decide(Decider *d, const Candidate *c) {
    if (d->has_last && c->idx - d->last_beat < d->refractory) return 0;
    if (c->peak > thr1(d)) {
        const int near = d->has_last && c->idx - d->last_beat < d->t_wave;
        if (near && c->slope < 0.5 * d->last_slope) return noise(d, c); /* a T wave */
        if (median_append(&d->sig, c->peak) < 0) return -1;
        return accept(d, c);
    }
    return noise(d, c);
}

/* QrsDecider.search_back_until, rule 5: every search-back whose deadline falls before
 * ``upto``: the largest noise candidate in [deadline - window, deadline] above THR1 / 2 (the
 * first of equals) is a beat; with none, the signal level is halved and the wait restarts. */
static int search_back_until(Decider *d, long long upto) {
    while (d->trained && d->has_deadline && d->deadline < upto) {
        const long long deadline = d->deadline, oldest = deadline - d->window;
        const double thr2 = 0.5 * thr1(d);
        Candidates *l = &d->noise;
        Py_ssize_t best = -1;
        for (Py_ssize_t i = l->first; i < l->end; i++) {
            const Candidate *c = l->item + i;
            if (oldest <= c->idx && c->idx <= deadline && c->peak > thr2 &&
                (best < 0 || c->peak > l->item[best].peak))
                best = i;
        }
        if (best < 0) {
            median_scale(&d->sig, 0.5);
            d->deadline = deadline + d->window;
            continue;
        }
        const Candidate c = l->item[best];
        if (median_append(&d->sig, c.peak) < 0 || accept(d, &c) < 0) return -1;
        l->first = best + 1; /* accept forgot the noise but for those after the beat */
    }
    return 0;
}

/* QrsDecider.train, rule 1: levels from the learning period, then the candidates held
 * decided in order. It runs once, in the first segment (later ones keep the levels). */
static int train(Decider *d) {
    Candidates *held = &d->learning;
    d->trained = 1;
    if (held->first == held->end) return 0;
    PyObject *peaks = PyList_New(held->end - held->first);
    if (peaks == NULL) return -1;
    for (Py_ssize_t i = held->first; i < held->end; i++) {
        PyObject *v = PyFloat_FromDouble(held->item[i].peak);
        if (v == NULL) {
            Py_DECREF(peaks);
            return -1;
        }
        PyList_SET_ITEM(peaks, i - held->first, v);
    }
    PyObject *levels = PyObject_CallOneArg(d->learnt_levels, peaks);
    Py_DECREF(peaks);
    double top, low;
    if (levels == NULL) return -1;
    const int ok = PyTuple_Check(levels) && PyArg_ParseTuple(levels, "dd", &top, &low);
    if (!ok && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "learnt_levels must return (signal, noise)");
    Py_DECREF(levels);
    if (!ok || median_append(&d->sig, top) < 0 || median_append(&d->noi, low) < 0) return -1;
    /* nothing below adds to the learning list: decide its items in place, then empty it */
    for (Py_ssize_t i = held->first; i < held->end; i++) {
        const Candidate c = held->item[i];
        if (search_back_until(d, c.idx) < 0 || decide(d, &c) < 0) return -1;
    }
    candidates_clear(held);
    return 0;
}

static int index_ok(long long i) {
    if (i <= -INDEX_MAX || i >= INDEX_MAX) {
        PyErr_SetString(PyExc_OverflowError, "sample index beyond +/- 2**62");
        return 0;
    }
    return 1;
}

/* QrsDecider.candidate: held while learning, else search back if due, then decided. */
static int on_candidate(Decider *d, const Candidate *c) {
    if (!index_ok(c->idx) || !index_ok(c->r_idx)) return -1;
    if (d->has_newest && c->idx <= d->newest) {
        PyErr_SetString(PyExc_ValueError, "candidates must come in sample order");
        return -1;
    }
    d->newest = c->idx;
    d->has_newest = 1;
    if (!d->trained) {
        if (c->idx < d->start + d->learn) return candidates_push(&d->learning, c);
        if (train(d) < 0) return -1;
    }
    if (d->has_deadline && d->deadline < c->idx && search_back_until(d, c->idx) < 0) return -1;
    return decide(d, c);
}

/* QrsDecider.scanned_to: every candidate before ``horizon`` given; train or search back if
 * due (``final``: the segment ends there, no search-back is forced yet). */
static int scanned_to(Decider *d, long long horizon, int final) {
    if (!index_ok(horizon)) return -1;
    if (!d->trained && horizon >= d->start + d->learn && train(d) < 0) return -1;
    if (!final && d->has_deadline && d->deadline < horizon) return search_back_until(d, horizon);
    return 0;
}

/* QrsDecider.end_segment: the segment ends at ``end``; decide what is held. */
static int end_segment(Decider *d, long long end) {
    if (!index_ok(end)) return -1;
    if (!d->trained && d->learning.first < d->learning.end && train(d) < 0) return -1;
    return search_back_until(d, end);
}

/* --- the Python type ---------------------------------------------------------------------- */
PyDoc_STRVAR(Decider_doc,
             "Decider(fs, refractory, t_wave, learn, rr_cap, window, threshold, searchback_rr,\n"
             "        wide, rr_history, level_history, width_history, learnt_levels)\n\n"
             "dsp.qrs_decide.QrsDecider's rules and state, compiled: the same constants (samples,\n"
             "as QrsDecider computes them), learnt_levels the function that sets the levels\n"
             "from the learning period's peaks. Beats accepted are held until take().");

static int Decider_init(Decider *d, PyObject *args, PyObject *kwds) {
    static char *names[] = {"fs", "refractory", "t_wave", "learn", "rr_cap", "window",
                            "threshold", "searchback_rr", "wide", "rr_history",
                            "level_history", "width_history", "learnt_levels", NULL};
    int level_history, width_history;
    PyObject *levels;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "dLLLLLdddiiiO", names, &d->fs, &d->refractory,
                                     &d->t_wave, &d->learn, &d->rr_cap, &d->window,
                                     &d->threshold, &d->searchback_rr, &d->wide, &d->rr_history,
                                     &level_history, &width_history, &levels))
        return -1;
    const long long constants[] = {d->refractory, d->t_wave, d->learn, d->rr_cap, d->window};
    for (int i = 0; i < 5; i++) {
        if (constants[i] < 0 || constants[i] > CONSTANT_MAX) {
            PyErr_SetString(PyExc_ValueError, "Decider: a constant outside [0, 2**40] samples");
            return -1;
        }
    }
    const int histories[] = {d->rr_history, level_history, width_history};
    for (int i = 0; i < 3; i++) {
        if (histories[i] < 1 || histories[i] > HISTORY_MAX) {
            PyErr_SetString(PyExc_ValueError, "Decider: histories of 1 to 32 values");
            return -1;
        }
    }
    /* the wait after a beat, ceil(searchback_rr * min(mean RR, rr_cap)), stays bounded */
    const double longest_wait = d->searchback_rr * (double)d->rr_cap;
    if (!(d->fs > 0) || !isfinite(d->fs) || !(longest_wait >= 0) ||
        !(longest_wait <= (double)CONSTANT_MAX) || !PyCallable_Check(levels)) {
        PyErr_SetString(PyExc_ValueError, "Decider: fs > 0, searchback_rr * rr_cap in [0, "
                                          "2**40] and a callable learnt_levels");
        return -1;
    }
    Py_INCREF(levels);
    Py_XSETREF(d->learnt_levels, levels);
    d->sig.size = d->noi.size = level_history;
    d->widths.size = width_history;
    median_clear(&d->sig);
    median_clear(&d->noi);
    d->trained = 0;
    d->out.n = 0;
    new_segment(d, 0);
    return 0;
}

static void Decider_dealloc(Decider *d) {
    PyMem_Free(d->learning.item);
    PyMem_Free(d->noise.item);
    PyMem_Free(d->out.item);
    Py_XDECREF(d->learnt_levels);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

/* The object is usable: __init__ ran (a subclass could skip it). */
static int ready(Decider *d) {
    if (d->learnt_levels == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Decider.__init__ was not called");
        return 0;
    }
    return 1;
}

/* The number of beats waiting for take(), or NULL after an error. */
static PyObject *pending(Decider *d, int status) {
    return status < 0 ? NULL : PyLong_FromSsize_t(d->out.n);
}

static PyObject *Decider_new_segment(Decider *d, PyObject *args) {
    long long start;
    if (!ready(d) || !PyArg_ParseTuple(args, "L", &start) || !index_ok(start)) return NULL;
    new_segment(d, start);
    Py_RETURN_NONE;
}

static PyObject *Decider_candidate(Decider *d, PyObject *args) {
    Candidate c;
    if (!ready(d) || !PyArg_ParseTuple(args, "LddLdd", &c.idx, &c.peak, &c.slope, &c.r_idx,
                                       &c.amplitude, &c.width))
        return NULL;
    return pending(d, on_candidate(d, &c));
}

static PyObject *Decider_scanned_to(Decider *d, PyObject *args) {
    long long horizon;
    int final;
    if (!ready(d) || !PyArg_ParseTuple(args, "Lp", &horizon, &final)) return NULL;
    return pending(d, scanned_to(d, horizon, final));
}

static PyObject *Decider_end_segment(Decider *d, PyObject *args) {
    long long end;
    if (!ready(d) || !PyArg_ParseTuple(args, "L", &end)) return NULL;
    return pending(d, end_segment(d, end));
}

/* The candidate at history slot i (sample base + i), measured as candidate() does on the
 * window from max(sample - locate, start), given to on_candidate. */
static int decide_slot(Decider *d, const double *buf, Py_ssize_t cap, long long base,
                       long long start, long long locate, double frac, Py_ssize_t i) {
    const long long idx = base + (i >= 0 && i < cap ? i : 0);
    const long long from = idx - locate > start ? idx - locate : start;
    const long long lo = from - base, hi = (long long)i + 1; /* as dsp.qrs_front computes them */
    if (i < 0 || i >= cap || lo < 0 || hi - lo < 1) {
        PyErr_SetString(PyExc_IndexError, "a candidate's window outside the history");
        return -1;
    }
    const Measured m = measure(buf, cap, (Py_ssize_t)lo, (Py_ssize_t)hi, frac);
    const Candidate c = {idx, m.peak, m.slope, from + m.r_rel, m.amplitude, m.width};
    return on_candidate(d, &c);
}

/* Decider.scan: each slot of the list decided, then scanned_to. */
static int scan_slots(Decider *d, const double *buf, Py_ssize_t cap, long long base,
                      long long start, long long locate, double frac, PyObject *slots,
                      long long horizon, int final) {
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(slots); k++) {
        const Py_ssize_t i = PyLong_AsSsize_t(PyList_GET_ITEM(slots, k));
        if (i == -1 && PyErr_Occurred()) return -1;
        if (decide_slot(d, buf, cap, base, start, locate, frac, i) < 0) return -1;
    }
    return scanned_to(d, horizon, final);
}

static PyObject *Decider_scan(Decider *d, PyObject *args) {
    Py_buffer view;
    Py_ssize_t cap;
    long long base, start, locate, horizon;
    double frac;
    PyObject *slots;
    int final;
    if (!ready(d) || !PyArg_ParseTuple(args, "w*nLLLdO!Lp", &view, &cap, &base, &start, &locate,
                                       &frac, &PyList_Type, &slots, &horizon, &final))
        return NULL;
    const double *buf = history(&view, cap);
    int status = -1;
    if (buf != NULL && index_ok(base) && index_ok(start) && index_ok(locate))
        status = scan_slots(d, buf, cap, base, start, locate, frac, slots, horizon, final);
    PyBuffer_Release(&view);
    return pending(d, status);
}

static PyObject *Decider_take(Decider *d, PyObject *args) {
    Py_buffer sv, fv, wv;
    if (!ready(d) || !PyArg_ParseTuple(args, "w*w*w*", &sv, &fv, &wv)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = d->out.n;
    if (sv.len != n * (Py_ssize_t)sizeof(long long) || fv.len != 3 * n * (Py_ssize_t)sizeof(double) ||
        wv.len != n) {
        PyErr_SetString(PyExc_ValueError, "take: seq int64 (n), floats float64 (3, n), wide bool (n)");
    } else {
        long long *seq = (long long *)sv.buf;
        double *amp = (double *)fv.buf, *rr = amp + n, *width = rr + n;
        char *wide = (char *)wv.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            const Beat *b = d->out.item + i;
            seq[i] = b->seq;
            amp[i] = b->amplitude_mv;
            rr[i] = b->rr_s;
            width[i] = b->width_s;
            wide[i] = b->ventricular;
        }
        d->out.n = 0;
        result = PyLong_FromSsize_t(n);
    }
    release_all((Py_buffer *[]){&sv, &fv, &wv, NULL});
    return result;
}

static PyObject *Decider_get_trained(Decider *d, void *closure) { return PyBool_FromLong(d->trained); }
static PyObject *Decider_get_thr1(Decider *d, void *closure) { return PyFloat_FromDouble(thr1(d)); }
static PyObject *Decider_get_held(Decider *d, void *closure) {
    return PyLong_FromSsize_t(d->noise.end - d->noise.first);
}
static PyObject *Decider_get_pending(Decider *d, void *closure) { return PyLong_FromSsize_t(d->out.n); }

static PyGetSetDef Decider_getset[] = {
    {"trained", (getter)Decider_get_trained, NULL, "The levels were learnt.", NULL},
    {"thr1", (getter)Decider_get_thr1, NULL, "THR1 of the current levels.", NULL},
    {"held", (getter)Decider_get_held, NULL, "Noise candidates kept for a search-back.", NULL},
    {"pending", (getter)Decider_get_pending, NULL, "Beats waiting for take().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Decider_methods[] = {
    {"new_segment", (PyCFunction)Decider_new_segment, METH_VARARGS,
     "new_segment(start): QrsDecider.new_segment."},
    {"candidate", (PyCFunction)Decider_candidate, METH_VARARGS,
     "candidate(idx, peak, slope, r_idx, amplitude, width) -> pending: QrsDecider.candidate."},
    {"scanned_to", (PyCFunction)Decider_scanned_to, METH_VARARGS,
     "scanned_to(horizon, final) -> pending: QrsDecider.scanned_to."},
    {"end_segment", (PyCFunction)Decider_end_segment, METH_VARARGS,
     "end_segment(end) -> pending: QrsDecider.end_segment."},
    {"scan", (PyCFunction)Decider_scan, METH_VARARGS,
     "scan(buf, cap, base, start, locate, frac, slots, horizon, final) -> pending\n\n"
     "The candidates at history slots ``slots`` (list of int, sample - base, in order),\n"
     "each measured as candidate() does (window from max(sample - locate, start)), given\n"
     "to candidate(); then scanned_to(horizon, final)."},
    {"take", (PyCFunction)Decider_take, METH_VARARGS,
     "take(seq, floats, wide) -> n\n\n"
     "Move the n pending beats into seq (int64, n), floats (float64 (3, n): amplitude mV,\n"
     "RR s, width s) and wide (bool, n)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DeciderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dsp._qrs_kernel.Decider",
    .tp_doc = Decider_doc,
    .tp_basicsize = sizeof(Decider),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decider_init,
    .tp_dealloc = (destructor)Decider_dealloc,
    .tp_methods = Decider_methods,
    .tp_getset = Decider_getset,
};

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
 * processor overlaps their latencies (about twice as fast as one after the other). x may be
 * yb or ya (each x[i] is read before y[i] is written). */
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

/* sosfilt_pair for two cascades of two sections each (the detector's: the QRS band-pass, and
 * the 0.5 Hz high-pass then 40 Hz low-pass), the same operations in the same order with the
 * coefficients and states held in registers across the block instead of being stored and
 * loaded again at every sample (the loads and stores are on the recurrences' critical path). */
static void sosfilt_pair_2x2(const double *sa, double *za, double *ya, const double *sb,
                             double *zb, double *yb, const double *x, Py_ssize_t n) {
    const double a0 = sa[0], a1 = sa[1], a2 = sa[2], a4 = sa[4], a5 = sa[5];
    const double a6 = sa[6], a7 = sa[7], a8 = sa[8], a10 = sa[10], a11 = sa[11];
    const double b0 = sb[0], b1 = sb[1], b2 = sb[2], b4 = sb[4], b5 = sb[5];
    const double b6 = sb[6], b7 = sb[7], b8 = sb[8], b10 = sb[10], b11 = sb[11];
    double za0 = za[0], za1 = za[1], za2 = za[2], za3 = za[3];
    double zb0 = zb[0], zb1 = zb[1], zb2 = zb[2], zb3 = zb[3];
    for (Py_ssize_t i = 0; i < n; i++) {
        const double xi = x[i];
        const double ay = a0 * xi + za0, by = b0 * xi + zb0; /* first sections */
        za0 = a1 * xi - a4 * ay + za1;
        zb0 = b1 * xi - b4 * by + zb1;
        za1 = a2 * xi - a5 * ay;
        zb1 = b2 * xi - b5 * by;
        const double ay2 = a6 * ay + za2, by2 = b6 * by + zb2; /* second sections */
        za2 = a7 * ay - a10 * ay2 + za3;
        zb2 = b7 * by - b10 * by2 + zb3;
        za3 = a8 * ay - a11 * ay2;
        zb3 = b8 * by - b11 * by2;
        ya[i] = ay2;
        yb[i] = by2;
    }
    za[0] = za0, za[1] = za1, za[2] = za2, za[3] = za3;
    zb[0] = zb0, zb[1] = zb1, zb[2] = zb2, zb[3] = zb3;
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

/* Samples: a 1-D float32 or float64 array of the machine's byte order, any stride. */
static int samples_view(PyObject *obj, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_STRIDES | PyBUF_FORMAT) < 0) return 0;
    const char *f = view->format;
    if (view->ndim != 1 || f == NULL || f[0] == '\0' || f[1] != '\0' ||
        !((f[0] == 'f' && view->itemsize == 4) || (f[0] == 'd' && view->itemsize == 8))) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "samples must be a 1-D float32 or float64 array");
        return 0;
    }
    return 1;
}

/* The samples of a samples_view() as float64 into out (exact: a float32 widens without
 * rounding). */
static void samples_copy(const Py_buffer *v, double *out) {
    const char *p = (const char *)v->buf;
    const Py_ssize_t n = v->shape[0], step = v->strides[0];
    if (v->itemsize == 4) {
        for (Py_ssize_t i = 0; i < n; i++, p += step) {
            float x;
            memcpy(&x, p, sizeof x);
            out[i] = (double)x;
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++, p += step) memcpy(out + i, p, sizeof(double));
    }
}

/* Whether every sample of a samples_view() is finite. */
static int samples_finite(const Py_buffer *v) {
    const char *p = (const char *)v->buf;
    const Py_ssize_t n = v->shape[0], step = v->strides[0];
    if (v->itemsize == 4) {
        for (Py_ssize_t i = 0; i < n; i++, p += step) {
            float x;
            memcpy(&x, p, sizeof x);
            if (!isfinite(x)) return 0;
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++, p += step) {
            double x;
            memcpy(&x, p, sizeof x);
            if (!isfinite(x)) return 0;
        }
    }
    return 1;
}

PyDoc_STRVAR(all_finite_doc,
             "all_finite(x) -> bool\n\n"
             "Whether every sample of x (1-D float32 or float64, any stride) is finite.");

static PyObject *all_finite(PyObject *self, PyObject *arg) {
    Py_buffer xv;
    if (!samples_view(arg, &xv)) return NULL;
    const int all = samples_finite(&xv);
    PyBuffer_Release(&xv);
    return PyBool_FromLong(all);
}

PyDoc_STRVAR(front_doc,
             "front(buf, cap, done, h, n, w, fresh, x, qrs_sos, qrs_zi, amp_sos, amp_zi,\n"
             "      a, b, r, first[, decider, base, locate, frac, horizon])\n\n"
             "One block into the history: move the last h samples of the previous block (of\n"
             "``done`` samples) to the front, filter x (n samples, 1-D float32 or float64, any\n"
             "stride) into f and amp with the two SOS cascades (states updated in place), then\n"
             ":func:`feature`. Without a decider: return peaks(buf, cap, a, b, r, first, h + n)\n"
             "([] when b <= a). With one: give it those peaks as Decider.scan(buf, cap, base,\n"
             "base + first, locate, frac, peaks, horizon, False) would, and return its pending\n"
             "count. Either way, None when the running sum is no longer finite and b > a (NaN or\n"
             "inf in the segment: the caller searches itself; nothing was decided).");

/* front()'s scan with a decider: each peak of [a, b) decided, then scanned_to(horizon). */
static int front_decide(Decider *d, const double *buf, Py_ssize_t cap, Py_ssize_t a,
                        Py_ssize_t b, Py_ssize_t r, Py_ssize_t first, Py_ssize_t stop,
                        long long base, long long locate, double frac, long long horizon) {
    if (b > a) {
        const double *e = buf + ROW_E * cap;
        for (Py_ssize_t i = next_peak(e, a, b, r, first, stop); i < b;
             i = next_peak(e, i + 1, b, r, first, stop)) {
            if (decide_slot(d, buf, cap, base, base + first, locate, frac, i) < 0) return -1;
        }
    }
    return scanned_to(d, horizon, 0);
}

static PyObject *front(PyObject *self, PyObject *args) {
    Py_buffer view, qs, qz, as_, az, xv = {0};
    Py_ssize_t cap, done, h, n, w, nq, na, a, b, r, first;
    int fresh;
    PyObject *x_obj, *decider = Py_None;
    long long base = 0, locate = 0, horizon = 0;
    double frac = 0.0;
    if (!PyArg_ParseTuple(args, "w*nnnnnpOy*w*y*w*nnnn|OLLdL", &view, &cap, &done, &h, &n, &w,
                          &fresh, &x_obj, &qs, &qz, &as_, &az, &a, &b, &r, &first, &decider,
                          &base, &locate, &frac, &horizon))
        return NULL;
    PyObject *result = NULL;
    double *buf = history(&view, cap);
    if (buf == NULL || !sos_args(&qs, &qz, &nq) || !sos_args(&as_, &az, &na) ||
        !samples_view(x_obj, &xv))
        goto done;
    if (xv.shape[0] != n || done < 0 || !in_range(done, done + h, cap) ||
        !in_range(h - (w > 1 ? w : 1), h + n, cap)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "x must hold n samples");
        goto done;
    }
    if (decider != Py_None) {
        if (!PyObject_TypeCheck(decider, &DeciderType)) {
            PyErr_SetString(PyExc_TypeError, "decider must be a Decider or None");
            goto done;
        }
        if (!ready((Decider *)decider) || !index_ok(base) || !index_ok(first) ||
            !index_ok(locate) || !index_ok(horizon))
            goto done;
    }
    if (b > a && !peak_bounds(cap, a, b, r, first, h + n)) goto done;
    if (done) {
        for (int row = 0; row < N_ROWS; row++)
            memmove(buf + row * cap, buf + row * cap + done, (size_t)h * sizeof(double));
    }
    /* the samples as float64 into amp's place, which the filter then overwrites in place */
    double *x = buf + ROW_AMP * cap + h;
    samples_copy(&xv, x);
    if (nq == 2 && na == 2)
        sosfilt_pair_2x2((const double *)qs.buf, (double *)qz.buf, buf + ROW_F * cap + h,
                         (const double *)as_.buf, (double *)az.buf, x, x, n);
    else
        sosfilt_pair((const double *)qs.buf, nq, (double *)qz.buf, buf + ROW_F * cap + h,
                     (const double *)as_.buf, na, (double *)az.buf, x, x, n);
    feature_loop(buf, cap, h, n, w, fresh);
    if (b > a && !isfinite(buf[ROW_CSUM * cap + h + n - 1])) {
        Py_INCREF(Py_None);
        result = Py_None;
    } else if (decider != Py_None) {
        Decider *d = (Decider *)decider;
        result = pending(d, front_decide(d, buf, cap, a, b, r, first, h + n, base, locate, frac,
                                         horizon));
    } else {
        result = b > a ? peak_list(buf + ROW_E * cap, a, b, r, first, h + n) : PyList_New(0);
    }
done:
    if (xv.obj != NULL) PyBuffer_Release(&xv);
    release_all((Py_buffer *[]){&view, &qs, &qz, &as_, &az, NULL});
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
    release_all((Py_buffer *[]){&sa, &za, &sb, &zb, &xv, &ya, &yb, NULL});
    return result;
}

/* numpy's pairwise sum of n doubles (numpy/_core/src/umath/loops_utils.h.src): under 8
 * a plain loop, up to 128 eight accumulators, above that the halves (cut at a multiple
 * of 8) summed apart. np.add.reduce over a contiguous row is this sum (numpy 2), which
 * window_stats() reproduces so that its sums equal numpy's bit for bit (a test checks it
 * against the numpy installed). */
static double pairwise_sum(const double *a, Py_ssize_t n) {
    if (n < 8) {
        double res = 0.;
        for (Py_ssize_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        Py_ssize_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

PyDoc_STRVAR(window_stats_doc,
             "window_stats(sos_a, zi_a, sos_b, zi_b, x) -> (hi, lo, n_hi, n_lo, e_a, e_b)\n\n"
             "One lead's quality window in one pass: x (float64) filtered by the two SOS\n"
             "cascades (states updated in place, as sosfilt2), its highest and lowest sample\n"
             "and how many samples equal each, and the energies (sums of squares) of the two\n"
             "filtered signals, summed as np.add.reduce sums (dsp.quality checks it bit for bit).");

static PyObject *window_stats(PyObject *self, PyObject *args) {
    Py_buffer sa, za, sb, zb, xv;
    Py_ssize_t na, nb;
    if (!PyArg_ParseTuple(args, "y*w*y*w*y*", &sa, &za, &sb, &zb, &xv)) return NULL;
    PyObject *result = NULL;
    double *y = NULL;
    if (!sos_args(&sa, &za, &na) || !sos_args(&sb, &zb, &nb)) goto done;
    if (xv.len % (Py_ssize_t)sizeof(double) != 0 || xv.len == 0) {
        PyErr_SetString(PyExc_ValueError, "x must be a non-empty float64 array");
        goto done;
    }
    const Py_ssize_t n = xv.len / (Py_ssize_t)sizeof(double);
    const double *x = (const double *)xv.buf;
    y = PyMem_Malloc(2 * (size_t)n * sizeof(double));
    if (y == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    sosfilt_pair((const double *)sa.buf, na, (double *)za.buf, y, (const double *)sb.buf, nb,
                 (double *)zb.buf, y + n, x, n);
    double hi = x[0], lo = x[0];
    for (Py_ssize_t i = 1; i < n; i++) {
        /* as np.maximum / np.minimum: a NaN wins */
        if (!(hi >= x[i])) hi = isnan(hi) ? hi : x[i];
        if (!(lo <= x[i])) lo = isnan(lo) ? lo : x[i];
    }
    Py_ssize_t n_hi = 0, n_lo = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        n_hi += x[i] == hi;
        n_lo += x[i] == lo;
    }
    for (Py_ssize_t i = 0; i < 2 * n; i++) y[i] = y[i] * y[i];
    result = Py_BuildValue("ddnndd", hi, lo, n_hi, n_lo, pairwise_sum(y, n), pairwise_sum(y + n, n));
done:
    PyMem_Free(y);
    release_all((Py_buffer *[]){&sa, &za, &sb, &zb, &xv, NULL});
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
    release_all((Py_buffer *[]){&sv, &zv, &yv, NULL});
    return result;
}

/* ---------------------------------------------------------------------------------------
 * The beat classifier's per-beat arithmetic (dsp/beat_measure.py, dsp/atrial.py,
 * dsp/beat_model.py): the same operations in the same order as the numpy code there, every
 * sum taken in index order starting from its first term (np.add.accumulate), so both give
 * the same features to the last bit (tests/dsp/test_beat_kernel.py).
 * ------------------------------------------------------------------------------------- */

/* Sum of x[0:n] in index order (n >= 1). */
static inline double seqsum(const double *x, Py_ssize_t n) {
    double s = x[0];
    for (Py_ssize_t i = 1; i < n; i++) s += x[i];
    return s;
}

/* Dot product of a[0:n] and b[0:n], products summed in index order (n >= 1). */
static inline double seqdot(const double *a, const double *b, Py_ssize_t n) {
    double s = a[0] * b[0];
    for (Py_ssize_t i = 1; i < n; i++) s += a[i] * b[i];
    return s;
}

/* x[0:n] /= d, two lanes at a time (GCC/Clang vector extension: SSE2 on x86-64, NEON on
 * aarch64); each quotient is the IEEE one, the same as the scalar loop's. */
typedef double v2d __attribute__((vector_size(16)));
static inline void div_by(double *x, Py_ssize_t n, double d) {
    const v2d dv = {d, d};
    Py_ssize_t i = 0;
    for (; i + 2 <= n; i += 2) {
        v2d v;
        memcpy(&v, x + i, sizeof v);
        v = v / dv;
        memcpy(x + i, &v, sizeof v);
    }
    for (; i < n; i++) x[i] = x[i] / d;
}

/* out = (v - mean(v)) / max(norm, 1e-12): dsp.beat_measure._unit. */
static void unit_of(const double *v, Py_ssize_t n, double *out) {
    const double mean = seqsum(v, n) / (double)n;
    for (Py_ssize_t i = 0; i < n; i++) out[i] = v[i] - mean;
    double norm = sqrt(seqdot(out, out, n));
    if (!(norm >= 1e-12)) norm = 1e-12; /* np.maximum(norm, 1e-12) */
    div_by(out, n, norm);
}

/* Four dot products at once: a + c * stride (c = 0..3) with b[0:n], each summed in index
 * order exactly as seqdot does (four independent chains, so the processor overlaps them). */
static inline void seqdot4(const double *a, Py_ssize_t stride, const double *b, Py_ssize_t n,
                           double *out) {
    const double *a0 = a, *a1 = a + stride, *a2 = a + 2 * stride, *a3 = a + 3 * stride;
    double s0 = a0[0] * b[0], s1 = a1[0] * b[0], s2 = a2[0] * b[0], s3 = a3[0] * b[0];
    for (Py_ssize_t i = 1; i < n; i++) {
        const double bi = b[i];
        s0 += a0[i] * bi;
        s1 += a1[i] * bi;
        s2 += a2[i] * bi;
        s3 += a3[i] * bi;
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

/* Units of A rows of length n (rows + a * n -> out + a * n), four rows at a time: each
 * row's sums in index order as unit_of takes them, so the results are unit_of's. */
static void units_of(const double *restrict rows, Py_ssize_t A, Py_ssize_t n,
                     double *restrict out) {
    Py_ssize_t a = 0;
    for (; a + 4 <= A; a += 4) {
        const double *v0 = rows + a * n, *v1 = v0 + n, *v2 = v1 + n, *v3 = v2 + n;
        double *restrict o = out + a * n;
        double s0 = v0[0], s1 = v1[0], s2 = v2[0], s3 = v3[0];
        for (Py_ssize_t i = 1; i < n; i++) {
            s0 += v0[i];
            s1 += v1[i];
            s2 += v2[i];
            s3 += v3[i];
        }
        const double m0 = s0 / (double)n, m1 = s1 / (double)n, m2 = s2 / (double)n,
                     m3 = s3 / (double)n;
        for (Py_ssize_t i = 0; i < n; i++) {
            o[i] = v0[i] - m0;
            o[n + i] = v1[i] - m1;
            o[2 * n + i] = v2[i] - m2;
            o[3 * n + i] = v3[i] - m3;
        }
        double q0 = o[0] * o[0], q1 = o[n] * o[n], q2 = o[2 * n] * o[2 * n];
        double q3 = o[3 * n] * o[3 * n];
        for (Py_ssize_t i = 1; i < n; i++) {
            q0 += o[i] * o[i];
            q1 += o[n + i] * o[n + i];
            q2 += o[2 * n + i] * o[2 * n + i];
            q3 += o[3 * n + i] * o[3 * n + i];
        }
        const double q[4] = {q0, q1, q2, q3};
        for (int c = 0; c < 4; c++) {
            double nm = sqrt(q[c]);
            if (!(nm >= 1e-12)) nm = 1e-12;
            div_by(o + c * n, n, nm);
        }
    }
    for (; a < A; a++) unit_of(rows + a * n, n, out + a * n);
}

/* RMS time of |v| about its centre (samples); NaN for a zero vector. */
static double spread_of(const double *v, Py_ssize_t n) {
    double total = fabs(v[0]), wt = fabs(v[0]) * 0.0, wt2 = fabs(v[0]) * 0.0;
    for (Py_ssize_t i = 1; i < n; i++) {
        const double w = fabs(v[i]), t = (double)i;
        total += w;
        wt += w * t;
        wt2 += w * (t * t);
    }
    if (!(total > 0)) return NAN;
    const double mean = wt / total;
    double var = wt2 / total - mean * mean;
    if (!(var > 1e-9)) var = 1e-9; /* max(var, 1e-9) */
    return sqrt(var);
}

static inline double stat_or(double v, double dflt) { return isnan(v) ? dflt : v; }
static inline double pymax(double a, double b) { return b > a ? b : a; } /* Python max(a, b) */
static inline double pymin(double a, double b) { return b < a ? b : a; } /* Python min(a, b) */

/* Layout indices, in the order dsp.beat_measure.Layout.kernel_params gives them. */
enum { P_LEADS, P_PRE, P_POST, P_LAG, P_SHIFT, P_LENGTH, P_ANCHOR, P_WAVE_PRE, P_WAVE, P_LEVEL,
       P_QA, P_QB, P_SA, P_SB, P_NOISE0, P_NOISE1, P_TEMPLATES, P_SIZE, P_NSTATS, N_PARAMS };

#define JOIN 0.90
#define REF_SHARE 0.20
#define REF_PREMATURITY 0.92
#define MAX_COUNT 512.0
#define HORIZON 16.0
#define PTP_MIN_MV 0.02 /* dsp.beat_measure.PTP_MIN_MV, PTP_MAX_MV: a measurable beat */
#define PTP_MAX_MV 20.0
#define BEAT_STATS 12    /* dsp.beat_measure.N_STATS: the running means this kernel folds */
#define BEAT_FEATURES1 24 /* len(dsp.beat_measure.FEATURES[1]) ... */
#define BEAT_FEATURES2 35 /* ... and [2]; hfs_z is always the last */

PyDoc_STRVAR(beat_doc,
             "beat(params, state, ring, cap, r, prem, irr, out, scratch) -> int\n\n"
             "dsp.beat_measure.measure_numpy for the beat at column r of ring (leads x cap\n"
             "float64): features into out, templates in state learnt. params: the layout's\n"
             "kernel_params (int64); scratch: float64 of at least scratch_size values.");

static PyObject *beat(PyObject *self, PyObject *args) {
    Py_buffer pv, sv, rv, ov, xv;
    Py_ssize_t cap, r;
    double prem, irr;
    if (!PyArg_ParseTuple(args, "y*w*y*nnddw*w*", &pv, &sv, &rv, &cap, &r, &prem, &irr, &ov, &xv))
        return NULL;
    PyObject *result = NULL;
    const long long *P = (const long long *)pv.buf;
    if (pv.len != (Py_ssize_t)(N_PARAMS * sizeof(long long)) || P[P_NSTATS] != BEAT_STATS) {
        PyErr_SetString(PyExc_ValueError, "params must be the layout's kernel_params");
        goto done;
    }
    const Py_ssize_t m = P[P_LEADS], pre = P[P_PRE], post = P[P_POST], lag = P[P_LAG];
    const Py_ssize_t sh = P[P_SHIFT], n = P[P_LENGTH], anchor = P[P_ANCHOR];
    const Py_ssize_t wpre = P[P_WAVE_PRE], W = P[P_WAVE], level = P[P_LEVEL];
    const Py_ssize_t qa = P[P_QA], qb = P[P_QB], sa = P[P_SA], sb = P[P_SB];
    const Py_ssize_t n0 = P[P_NOISE0], n1 = P[P_NOISE1], K = P[P_TEMPLATES], S = P[P_SIZE];
    const Py_ssize_t NS = P[P_NSTATS], A = 2 * sh + 1;
    const Py_ssize_t nf = m > 1 ? BEAT_FEATURES2 : BEAT_FEATURES1;
    const Py_ssize_t need_scratch = 2 * m * A * n + 2 * m * W + 2 * W + n + (2 * anchor);
    if (sv.len != (Py_ssize_t)((1 + K * S) * sizeof(double)) ||
        rv.len < (Py_ssize_t)(m * cap * sizeof(double)) || ov.len != (Py_ssize_t)(nf * sizeof(double)) ||
        xv.len < (Py_ssize_t)(need_scratch * sizeof(double))) {
        PyErr_SetString(PyExc_ValueError, "state, ring, out or scratch of the wrong size");
        goto done;
    }
    if (A > n) {
        PyErr_SetString(PyExc_ValueError, "more alignments than slope samples");
        goto done;
    }
    if (r - anchor - lag < 0 || r + anchor > cap || K > 64 || m < 1 || m > 2) {
        PyErr_SetString(PyExc_IndexError, "the beat's anchor window is not in the ring");
        goto done;
    }
    double *state = (double *)sv.buf, *out = (double *)ov.buf, *scr = (double *)xv.buf;
    const double *ring = (const double *)rv.buf;
    const double *first = ring;
    /* scratch: rows (m, A, n) | units (m, A, n) | wave (m, W) | wv, dw unit (W each) ... */
    double *rows = scr, *units = scr + m * A * n, *wave = units + m * A * n;
    double *u1 = wave + m * W, *u2 = u1 + W, *tmp = u2 + W, *e = tmp + n;

    /* 1. anchor */
    const Py_ssize_t a0 = r - anchor, ne = 2 * anchor;
    for (Py_ssize_t i = 0; i < ne; i++) {
        const double d = first[a0 + i] - first[a0 - lag + i];
        e[i] = d * d;
    }
    const double etot = seqsum(e, ne);
    Py_ssize_t s = r;
    if (etot > 0) {
        double c = e[0] * 0.0;
        for (Py_ssize_t i = 1; i < ne; i++) c += e[i] * (double)i;
        const double centre = c / etot;
        s = a0 + (Py_ssize_t)floor((centre - 0.5 * (double)lag) + 0.5);
    }
    /* 2. windows, amplitudes, measurability */
    const Py_ssize_t lo = s - pre - sh, ext_n = pre + post + 2 * sh;
    const Py_ssize_t wlo = s - wpre - sh, win_n = W + 2 * sh;
    double ptp[2] = {0.0, 0.0};
    int finite[2] = {1, 1};
    if (lo < 0 || wlo < 0 || lo + ext_n > cap || wlo + win_n > cap) {
        PyErr_SetString(PyExc_IndexError, "the beat's windows are not all in the ring");
        goto done;
    }
    for (Py_ssize_t ld = 0; ld < m; ld++) {
        const double *x = ring + ld * cap;
        double mx = x[lo + sh], mn = x[lo + sh];
        int nan = 0;
        for (Py_ssize_t i = lo + sh; i < lo + ext_n - sh; i++) {
            if (isnan(x[i])) nan = 1;
            if (x[i] > mx) mx = x[i];
            if (x[i] < mn) mn = x[i];
        }
        ptp[ld] = nan ? NAN : mx - mn;
        finite[ld] = isfinite(seqsum(x + wlo, win_n)) && isfinite(seqsum(x + lo, ext_n));
    }
    const Py_ssize_t nlo = s + n0 - lag, nn = n1 - n0 + lag;
    if (lo < 0 || wlo < 0 || nlo < 0 || lo + ext_n > cap || wlo + win_n > cap || s + n1 > cap) {
        PyErr_SetString(PyExc_IndexError, "the beat's windows are not all in the ring");
        goto done;
    }
    if (!(ptp[0] >= PTP_MIN_MV && ptp[0] <= PTP_MAX_MV) || !finite[0] || !isfinite(seqsum(first + nlo, nn))) {
        result = PyLong_FromLong(-1);
        goto done;
    }
    const int lead_b = m > 1 && ptp[1] >= PTP_MIN_MV && ptp[1] <= PTP_MAX_MV && finite[1];
    for (Py_ssize_t ld = 0; ld < m; ld++) {
        const double *x = ring + ld * cap + lo;
        for (Py_ssize_t a = 0; a < A; a++) {
            double *row = rows + (ld * A + a) * n;
            for (Py_ssize_t i = 0; i < n; i++) row[i] = x[a + i + lag] - x[a + i];
        }
        units_of(rows + ld * A * n, A, n, units + ld * A * n);
    }
    double hfs = NAN; /* high-frequency share of the first lead's slopes as placed */
    {
        const double *qs = rows + sh * n;
        double dd = 0.0;
        for (Py_ssize_t i = 0; i < n - lag; i++) {
            const double d = qs[i + lag] - qs[i];
            dd = i == 0 ? d * d : dd + d * d;
        }
        const double en = seqdot(qs, qs, n);
        if (en > 0) hfs = dd / en;
    }
    double *blocks = state + 1;
    const Py_ssize_t k = (Py_ssize_t)state[0];
#define T_UNIT(q, ld) (blocks + (q) * S + (ld) * n)
#define T_SLOPES(q, ld) (blocks + (q) * S + m * n + (ld) * n)
#define T_WAVE(q, ld) (blocks + (q) * S + 2 * m * n + (ld) * W)
#define T_PTP(q) (blocks + (q) * S + 2 * m * n + m * W)
#define T_COUNT(q) (blocks[(q) * S + 2 * m * n + m * W + m])
#define T_STATS(q) (blocks + (q) * S + 2 * m * n + m * W + m + 1)
    for (Py_ssize_t i = 0; i < nf; i++) out[i] = NAN;
    out[0] = prem;
    out[1] = irr;
    Py_ssize_t j = -1, at = sh;
    double best = -INFINITY;
    double best_c[64] = {0.0};
    Py_ssize_t best_at[64] = {0};
    int is_ref = 0;
    if (k) {
        for (Py_ssize_t q = 0; q < k; q++) {
            const double *tu = T_UNIT(q, 0);
            double *corr = tmp; /* A values (A <= n is checked) */
            Py_ssize_t a = 0;
            for (; a + 4 <= A; a += 4) seqdot4(units + a * n, n, tu, n, corr + a);
            for (; a < A; a++) corr[a] = seqdot(units + a * n, tu, n);
            double bc = corr[0];
            Py_ssize_t ba = 0;
            for (a = 1; a < A; a++) {
                if (corr[a] > bc) {
                    bc = corr[a];
                    ba = a;
                }
            }
            best_c[q] = bc;
            best_at[q] = ba;
        }
        j = 0;
        for (Py_ssize_t q = 1; q < k; q++)
            if (best_c[q] > best_c[j]) j = q;
        best = best_c[j];
        if (best >= JOIN) at = best_at[j];
        double total_n = 0.0;
        for (Py_ssize_t q = 0; q < k; q++) total_n += T_COUNT(q);
        int refs[64], nref = 0;
        Py_ssize_t dom = 0;
        for (Py_ssize_t q = 0; q < k; q++) {
            if (T_COUNT(q) > T_COUNT(dom)) dom = q;
            refs[q] = T_COUNT(q) >= REF_SHARE * total_n && stat_or(T_STATS(q)[0], 1.0) >= REF_PREMATURITY;
            nref += refs[q];
        }
        if (!nref) {
            refs[dom] = 1;
            nref = 1;
        }
        Py_ssize_t ref = -1;
        for (Py_ssize_t q = 0; q < k; q++)
            if (refs[q] && (ref < 0 || best_c[q] > best_c[ref])) ref = q;
        const Py_ssize_t da = best_at[ref];
        const double *rs = T_STATS(ref);
        out[3] = best_c[ref];
        out[4] = best_c[dom];
        out[5] = (double)nref;
        out[12] = (best >= JOIN ? T_COUNT(j) : 0.0) / total_n;
        is_ref = best >= JOIN && refs[j];
        out[13] = is_ref ? 1.0 : 0.0;
        const int use_b = lead_b && T_PTP(ref)[1] > 0;
        static const int cols[2][6] = {{6, 7, 8, 9, 10, 11}, {24, 25, 26, 27, 28, -1}};
        for (Py_ssize_t ld = 0; ld < (use_b ? 2 : 1); ld++) {
            const double rp = T_PTP(ref)[ld];
            out[cols[ld][0]] = ptp[ld] / pymax(rp, 1e-9);
            const double ref_spread = spread_of(T_SLOPES(ref, ld), n);
            out[cols[ld][1]] = spread_of(rows + (ld * A + da) * n, n) / pymax(stat_or(ref_spread, 1.0), 1e-9);
            const double *dw = T_WAVE(ref, ld);
            const double *x = ring + ld * cap + wlo + da;
            const double lev = seqsum(x, level) / (double)level;
            for (Py_ssize_t i = 0; i < W; i++) wave[i] = x[i] - lev;
            unit_of(wave, W, u1);
            unit_of(dw, W, u2);
            out[cols[ld][2]] = seqdot(u1, u2, W);
            double dd = 0.0;
            for (Py_ssize_t i = qa; i < qb; i++) {
                const double d = wave[i] - dw[i];
                dd = i == qa ? d * d : dd + d * d;
            }
            out[cols[ld][3]] = sqrt(dd) / pymax(rp, 1e-9) / sqrt((double)(qb - qa));
            for (Py_ssize_t i = sa; i < sb; i++) {
                const double d = wave[i] - dw[i];
                dd = i == sa ? d * d : dd + d * d;
            }
            out[cols[ld][4]] = sqrt(dd) / pymax(rp, 1e-9) / sqrt((double)(sb - sa));
            if (cols[ld][5] >= 0) {
                double aw = fabs(wave[qa]), ad = fabs(dw[qa]);
                for (Py_ssize_t i = qa + 1; i < qb; i++) {
                    aw += fabs(wave[i]);
                    ad += fabs(dw[i]);
                }
                out[cols[ld][5]] = aw / pymax(ad, 1e-9);
            }
        }
        out[15] = out[9] / pymax(stat_or(rs[5], 0.05), 0.01);
        out[16] = out[10] / pymax(stat_or(rs[6], 0.05), 0.01);
        out[17] = (1.0 - out[3]) / pymax(1.0 - stat_or(rs[1], 0.95), 0.01);
        if (use_b) {
            out[23] = seqdot(units + (A + da) * n, T_UNIT(ref, 1), n);
            out[29] = out[27] / pymax(stat_or(rs[9], 0.05), 0.01);
            out[30] = out[28] / pymax(stat_or(rs[10], 0.05), 0.01);
            out[31] = (1.0 - out[23]) / pymax(1.0 - stat_or(rs[7], 0.95), 0.01);
        }
        out[nf - 1] = hfs / pymax(stat_or(rs[11], hfs), 1e-9); /* hfs_z */
    }
    {   /* noise before the QRS, over the QRS's slopes as placed */
        const double *x = first + nlo;
        const Py_ssize_t len = nn - lag;
        double ss = 0.0;
        for (Py_ssize_t i = 0; i < len; i++) {
            const double d = x[i + lag] - x[i];
            ss = i == 0 ? d * d : ss + d * d;
        }
        const double *qs = rows + sh * n;
        out[14] = sqrt(ss / (double)len) / pymax(sqrt(seqdot(qs, qs, n) / (double)n), 1e-9);
    }
    /* learn */
    for (Py_ssize_t ld = 0; ld < m; ld++) {
        const double *x = ring + ld * cap + wlo + at;
        const double lev = seqsum(x, level) / (double)level;
        for (Py_ssize_t i = 0; i < W; i++) wave[ld * W + i] = x[i] - lev;
    }
    if (j < 0 || best < JOIN) {
        if (k < K) {
            j = k;
            state[0] = (double)(k + 1);
        } else {
            j = 0;
            for (Py_ssize_t q = 1; q < K; q++)
                if (T_COUNT(q) < T_COUNT(j)) j = q;
        }
        double *b = blocks + j * S;
        for (Py_ssize_t i = 0; i < 2 * m * n + m * W + m + 1; i++) b[i] = 0.0;
        for (Py_ssize_t i = 0; i < NS; i++) T_STATS(j)[i] = NAN;
    }
    const double rate = 1.0 / pymin(T_COUNT(j) + 1.0, HORIZON);
    for (Py_ssize_t ld = 0; ld < (lead_b ? 2 : 1); ld++) {
        double *tu = T_UNIT(j, ld), *ts = T_SLOPES(j, ld), *tw = T_WAVE(j, ld);
        const double *bu = units + (ld * A + at) * n, *br = rows + (ld * A + at) * n;
        const double *bw = wave + ld * W;
        if (T_PTP(j)[ld] > 0) {
            for (Py_ssize_t i = 0; i < n; i++) tmp[i] = tu[i] + (bu[i] - tu[i]) * rate;
            const double norm = sqrt(seqdot(tmp, tmp, n));
            for (Py_ssize_t i = 0; i < n; i++) tu[i] = tmp[i] / norm;
            for (Py_ssize_t i = 0; i < n; i++) ts[i] = ts[i] + (br[i] - ts[i]) * rate;
            for (Py_ssize_t i = 0; i < W; i++) tw[i] = tw[i] + (bw[i] - tw[i]) * rate;
            T_PTP(j)[ld] = T_PTP(j)[ld] + (ptp[ld] - T_PTP(j)[ld]) * rate;
        } else {
            memcpy(tu, bu, (size_t)n * sizeof(double));
            memcpy(ts, br, (size_t)n * sizeof(double));
            memcpy(tw, bw, (size_t)W * sizeof(double));
            T_PTP(j)[ld] = ptp[ld];
        }
    }
    T_COUNT(j) = T_COUNT(j) + 1.0;
    {
        const Py_ssize_t used = (Py_ssize_t)state[0];
        double sum = T_COUNT(0);
        for (Py_ssize_t q = 1; q < used; q++) sum += T_COUNT(q);
        if (sum > MAX_COUNT)
            for (Py_ssize_t q = 0; q < used; q++) {
                const double h = floor(T_COUNT(q) / 2.0);
                T_COUNT(q) = h >= 1.0 ? h : 1.0;
            }
    }
    {
        const double fold = 1.0 / pymin(T_COUNT(j), HORIZON);
        double *row = T_STATS(j);
        const double values[BEAT_STATS] = {out[0], out[3], out[7], out[15], out[17], out[9],
                                           out[10], m > 1 ? out[23] : NAN,
                                           m > 1 ? out[31] : NAN, m > 1 ? out[27] : NAN,
                                           m > 1 ? out[28] : NAN, hfs};
        for (Py_ssize_t i = 0; i < NS; i++) {
            const double v = values[i];
            if (isnan(v)) continue;
            row[i] = isnan(row[i]) ? v : row[i] + (v - row[i]) * fold;
        }
        for (Py_ssize_t i = 0; i < 5; i++) out[18 + i] = row[i];
        if (m > 1) {
            out[32] = row[7];
            out[33] = row[8];
        }
    }
#undef T_UNIT
#undef T_SLOPES
#undef T_WAVE
#undef T_PTP
#undef T_COUNT
#undef T_STATS
    result = PyLong_FromSsize_t(j + (is_ref ? K : 0));
done:
    release_all((Py_buffer *[]){&pv, &sv, &rv, &ov, &xv, NULL});
    return result;
}

PyDoc_STRVAR(pwave_doc,
             "pwave(state, t, tt, window, learn) -> float\n\n"
             "dsp.atrial.PWaveScorer.score: state [count, template (n), unit (n)], t the\n"
             "centred time axis (n), tt its sum of squares, window (n).");

static PyObject *pwave(PyObject *self, PyObject *args) {
    Py_buffer sv, tv, wv;
    double tt;
    int learn;
    if (!PyArg_ParseTuple(args, "w*y*dy*p", &sv, &tv, &tt, &wv, &learn)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = tv.len / (Py_ssize_t)sizeof(double);
    if (n < 1 || wv.len != tv.len || sv.len != (Py_ssize_t)((1 + 2 * n) * sizeof(double))) {
        PyErr_SetString(PyExc_ValueError, "pwave: state 1 + 2n, t and window n float64");
        goto done;
    }
    double *state = (double *)sv.buf, *template = state + 1, *unit = state + 1 + n;
    const double *t = (const double *)tv.buf, *w = (const double *)wv.buf;
    double d[1024];
    if (n > 1024) {
        PyErr_SetString(PyExc_ValueError, "pwave: window longer than 1024 samples");
        goto done;
    }
    const double mean = seqsum(w, n) / (double)n;
    const double slope = seqdot(w, t, n) / tt;
    for (Py_ssize_t i = 0; i < n; i++) d[i] = (w[i] - mean) - slope * t[i];
    const double norm = sqrt(seqdot(d, d, n));
    if (!(norm > 0)) {
        result = PyFloat_FromDouble(NAN);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) d[i] = d[i] / norm;
    double count = state[0];
    const double value = count >= 4 ? seqdot(unit, d, n) : NAN;
    if (learn) {
        count = state[0] = count + 1.0;
        const double div = pymin(count, 16.0);
        for (Py_ssize_t i = 0; i < n; i++) template[i] = template[i] + (d[i] - template[i]) / div;
        const double tn = sqrt(seqdot(template, template, n));
        for (Py_ssize_t i = 0; i < n; i++) unit[i] = tn > 0 ? template[i] / tn : 0.0;
    }
    result = PyFloat_FromDouble(value);
done:
    release_all((Py_buffer *[]){&sv, &tv, &wv, NULL});
    return result;
}

PyDoc_STRVAR(forest_doc,
             "forest(row, neutral, feature, threshold, leaf, base) -> float\n\n"
             "dsp.beat_model.Forest.score of one features row: NaN features read as neutral;\n"
             "feature (trees, depth) int64, threshold (trees, depth), leaf (trees, 2**depth).");

static PyObject *forest(PyObject *self, PyObject *args) {
    Py_buffer rv, nv, fv, tv, lv;
    double base;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*d", &rv, &nv, &fv, &tv, &lv, &base)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t nf = rv.len / (Py_ssize_t)sizeof(double);
    const Py_ssize_t splits = fv.len / (Py_ssize_t)sizeof(long long);
    if (nv.len != rv.len || tv.len != splits * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "forest: row/neutral, feature/threshold sizes differ");
        goto done;
    }
    if (splits == 0) { /* no trees */
        result = PyFloat_FromDouble(base);
        goto done;
    }
    const Py_ssize_t leaves_total = lv.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t depth = 0, trees = 0;
    for (depth = 1; depth < 30; depth++) {
        if (splits % depth) continue;
        trees = splits / depth;
        if (trees * ((Py_ssize_t)1 << depth) == leaves_total) break;
    }
    if (depth >= 30) {
        PyErr_SetString(PyExc_ValueError, "forest: leaf size does not match the splits");
        goto done;
    }
    const double *row = (const double *)rv.buf, *neutral = (const double *)nv.buf;
    const long long *feature = (const long long *)fv.buf;
    const double *threshold = (const double *)tv.buf, *leaf = (const double *)lv.buf;
    double score = base;
    for (Py_ssize_t t = 0; t < trees; t++) {
        Py_ssize_t idx = 0;
        for (Py_ssize_t d = 0; d < depth; d++) {
            const long long f = feature[t * depth + d];
            if (f < 0 || f >= nf) {
                PyErr_SetString(PyExc_IndexError, "forest: feature index out of range");
                goto done;
            }
            const double x = isnan(row[f]) ? neutral[f] : row[f];
            idx = 2 * idx + (x > threshold[t * depth + d]);
        }
        score += leaf[(t << depth) + idx];
    }
    result = PyFloat_FromDouble(score);
done:
    release_all((Py_buffer *[]){&rv, &nv, &fv, &tv, &lv, NULL});
    return result;
}

/* dsp.af's Poincare spread: the Chebyshev distance from (prev, rr) to the nearest of the
 * m points (a[j], b[j]), each coordinate relative to the new point's (inf when none). */
static double nearest_point(const double *a, const double *b, Py_ssize_t m, double prev,
                            double rr) {
    double best = INFINITY;
    for (Py_ssize_t j = 0; j < m; j++) {
        const double da = fabs(a[j] - prev) / prev, db = fabs(b[j] - rr) / rr;
        const double d = da >= db ? da : db;
        if (d < best) best = d;
    }
    return best;
}

PyDoc_STRVAR(nearest_doc,
             "nearest(points, prev, rr) -> float\n\n"
             "dsp.af's Poincare spread: the Chebyshev distance from (prev, rr) to the nearest\n"
             "of points (2, m) float64 (row 0 previous intervals, row 1 intervals), each\n"
             "coordinate relative to the new point's; inf when none is finite.");

static PyObject *nearest(PyObject *self, PyObject *args) {
    Py_buffer pv;
    double prev, rr;
    if (!PyArg_ParseTuple(args, "y*dd", &pv, &prev, &rr)) return NULL;
    PyObject *result = NULL;
    if (pv.len % (Py_ssize_t)(2 * sizeof(double)) != 0) {
        PyErr_SetString(PyExc_ValueError, "nearest: points must be (2, m) float64");
    } else {
        const Py_ssize_t m = pv.len / (Py_ssize_t)(2 * sizeof(double));
        const double *a = (const double *)pv.buf;
        result = PyFloat_FromDouble(nearest_point(a, a + m, m, prev, rr));
    }
    PyBuffer_Release(&pv);
    return result;
}

/* ------------------------------------------------------------------------------------
 * dsp.af's AfDetector, compiled (AfCore): the same state and arithmetic, step for step,
 * so that both give the same verdicts bit for bit (tests/dsp/test_af.py). The constants
 * come from dsp/af.py at construction; None (a missing interval, P-wave score) is a flag.
 * ------------------------------------------------------------------------------------ */
#define AF_CAP 64 /* room of every window (dsp.af's are 3 to 32) */

typedef struct {
    double v[AF_CAP];        /* values in arrival order (a ring) */
    unsigned char ok[AF_CAP]; /* 0: None */
    int head, len, size;
    double s[AF_CAP]; /* the valid values, sorted */
    int ns;
} AfWin;

static void afwin_init(AfWin *w, int size) {
    w->head = w->len = w->ns = 0;
    w->size = size;
}

static void afwin_clear(AfWin *w) { w->head = w->len = w->ns = 0; }

/* _Window.push: the oldest value leaves when full; a valid value joins the sorted list */
static void afwin_push(AfWin *w, int ok, double x) {
    if (w->len == w->size) {
        const int old = w->head;
        if (w->ok[old]) {
            const int at = bisect_left(w->s, w->ns, w->v[old]);
            memmove(w->s + at, w->s + at + 1, (size_t)(w->ns - at - 1) * sizeof(double));
            w->ns--;
        }
        w->head = (w->head + 1) % w->size;
        w->len--;
    }
    const int at = (w->head + w->len) % w->size;
    w->v[at] = x;
    w->ok[at] = (unsigned char)(ok != 0);
    w->len++;
    if (ok) {
        const int k = bisect_right(w->s, w->ns, x);
        memmove(w->s + k + 1, w->s + k, (size_t)(w->ns - k) * sizeof(double));
        w->s[k] = x;
        w->ns++;
    }
}

static double afwin_median(const AfWin *w) { return sorted_median(w->s, w->ns); }

/* math.fsum: the correctly rounded sum (CPython's msum with its half-even fix-up); the
 * values here are finite */
static double exact_sum(const double *v, int n) {
    double p[AF_CAP];
    int np_ = 0;
    for (int k = 0; k < n; k++) {
        double x = v[k];
        int i = 0;
        for (int j = 0; j < np_; j++) {
            double y = p[j];
            if (fabs(x) < fabs(y)) {
                const double t = x;
                x = y;
                y = t;
            }
            const double hi = x + y, yr = hi - x, lo = y - yr;
            if (lo != 0.0) p[i++] = lo;
            x = hi;
        }
        np_ = i;
        if (x != 0.0) p[np_++] = x;
    }
    double hi = 0.0, lo = 0.0;
    if (np_ > 0) {
        hi = p[--np_];
        while (np_ > 0) {
            const double x = hi, y = p[--np_];
            hi = x + y;
            const double yr = hi - x;
            lo = y - yr;
            if (lo != 0.0) break;
        }
        if (np_ > 0 && ((lo < 0.0 && p[np_ - 1] < 0.0) || (lo > 0.0 && p[np_ - 1] > 0.0))) {
            const double y = lo * 2.0, x = hi + y, yr = x - hi;
            if (y == yr) hi = x;
        }
    }
    return hi;
}

#define AF_POINTS_MAX 63

typedef struct {
    PyObject_HEAD
    /* constants (dsp/af.py) */
    double fs, premature, compensatory, rate_rr_s, enter, leave, spread_min, spread_leave;
    double p_weight, split, split_short, missed;
    int window, ref_beats, min_pairs, average, points, beats_cap;
    /* state */
    long long beats[AF_CAP];
    int beats_head, beats_len;
    AfWin ref, lag[3], kept_rr, all_rr, p, distances;
    int has_pending, pending_v, pending_noise, pending_has_p;
    double pending_rr, pending_p;
    int prev_premature;
    double kept[3];
    unsigned char kept_ok[3];
    int kept_len; /* up to 3; kept[kept_len - 1] the newest */
    double pts[2][AF_POINTS_MAX];
    int pts_at, has_prev;
    double prev_rr;
    double values[AF_CAP];
    int values_head, values_len;
    int has_last, last_wide, last_noisy, active, has_first;
    double last_value;
    long long onset, last_irregular, first_seq;
} AfCore;

static long long af_beat(const AfCore *a, int i) { /* i >= 0 from the oldest, < 0 newest */
    const int k = i >= 0 ? i : a->beats_len + i;
    return a->beats[(a->beats_head + k) % a->beats_cap];
}

static void af_beat_append(AfCore *a, long long seq) {
    if (a->beats_len == a->beats_cap) {
        a->beats_head = (a->beats_head + 1) % a->beats_cap;
        a->beats_len--;
    }
    a->beats[(a->beats_head + a->beats_len) % a->beats_cap] = seq;
    a->beats_len++;
}

static void af_spread_clear(AfCore *a) {
    for (int j = 0; j < a->points - 1; j++) a->pts[0][j] = a->pts[1][j] = INFINITY;
    a->pts_at = 0;
    a->has_prev = 0;
    afwin_clear(&a->distances);
}

static void af_spread_push(AfCore *a, double rr) {
    const double prev = a->prev_rr;
    const int had = a->has_prev;
    a->prev_rr = rr;
    a->has_prev = 1;
    if (!had) return;
    const int m = a->points - 1;
    const double best = nearest_point(a->pts[0], a->pts[1], m, prev, rr);
    if (best != INFINITY) afwin_push(&a->distances, 1, best);
    a->pts[0][a->pts_at] = prev;
    a->pts[1][a->pts_at] = rr;
    a->pts_at = (a->pts_at + 1) % m;
}

static void af_start(AfCore *a, long long seq, int ventricular, int noisy) {
    a->beats_head = a->beats_len = 0;
    afwin_clear(&a->ref);
    a->has_pending = 0;
    a->prev_premature = 0;
    a->kept_len = 0;
    for (int k = 0; k < 3; k++) afwin_clear(&a->lag[k]);
    afwin_clear(&a->kept_rr);
    afwin_clear(&a->all_rr);
    afwin_clear(&a->p);
    af_spread_clear(a);
    a->values_head = a->values_len = 0;
    a->has_last = 0;
    a->active = 0;
    a->has_first = 1;
    a->first_seq = seq;
    af_beat_append(a, seq);
    a->last_wide = ventricular != 0;
    a->last_noisy = noisy != 0;
}

/* _irregularity: the rate-scaled irregularity of the window (unchanged when not judged) */
static void af_irregularity(AfCore *a) {
    int any = 0;
    double low = 0.0;
    for (int k = 0; k < 3; k++) {
        if (a->lag[k].ns >= a->min_pairs) {
            const double m = afwin_median(&a->lag[k]);
            if (!any || m < low) low = m;
            any = 1;
        }
    }
    if (!any || !a->kept_rr.ns) return;
    const double typical = afwin_median(&a->kept_rr), median_rr = afwin_median(&a->all_rr);
    double value = low / typical * sqrt(a->rate_rr_s * a->fs / median_rr);
    if (a->p.ns >= a->min_pairs) {
        double score = afwin_median(&a->p);
        score = score > 0.0 ? score : 0.0; /* min(max(score, 0), 1) */
        score = score < 1.0 ? score : 1.0;
        value *= 1.0 - a->p_weight * score;
    }
    a->last_value = value;
    a->has_last = 1;
}

static void af_judge(AfCore *a, double next_rr) {
    const double rr = a->pending_rr;
    const int noise = a->pending_noise;
    int premature = 0, split = 0, missed = 0;
    if (a->ref.ns == a->ref_beats) {
        const double ref = afwin_median(&a->ref);
        premature = rr < a->premature * ref && next_rr >= a->compensatory * ref;
        split = fabs(rr + next_rr - ref) < a->split * ref &&
                (rr < next_rr ? rr : next_rr) < a->split_short * ref;
        missed = fabs(rr - 2 * ref) < a->missed * ref;
    }
    const int keep =
        !(a->pending_v || noise || premature || split || missed || a->prev_premature);
    a->prev_premature = premature || split;
    for (int lag = 1; lag <= 3; lag++) {
        const int has_before = a->kept_len >= lag && a->kept_ok[a->kept_len - lag];
        const double before = has_before ? a->kept[a->kept_len - lag] : 0.0;
        const int ok = keep && has_before;
        afwin_push(&a->lag[lag - 1], ok, ok ? fabs(rr - before) : 0.0);
    }
    if (a->kept_len == 3) { /* deque(maxlen=3).append */
        a->kept[0] = a->kept[1];
        a->kept[1] = a->kept[2];
        a->kept_ok[0] = a->kept_ok[1];
        a->kept_ok[1] = a->kept_ok[2];
        a->kept_len = 2;
    }
    a->kept[a->kept_len] = rr;
    a->kept_ok[a->kept_len] = (unsigned char)keep;
    a->kept_len++;
    afwin_push(&a->kept_rr, keep, rr);
    if (!noise) {
        af_spread_push(a, rr);
        afwin_push(&a->all_rr, 1, rr);
    }
    afwin_push(&a->p, !noise && a->pending_has_p, a->pending_p);
    af_irregularity(a);
}

/* _decide: 0 nothing judged, 1 judged (no change), 2 AF began, 3 AF ended; *seq, *state */
static int af_decide(AfCore *a, long long *seq, double *st) {
    if (!a->has_last) return 0;
    const double value = a->last_value;
    if (a->values_len == a->average) {
        a->values_head = (a->values_head + 1) % a->average;
        a->values_len--;
    }
    a->values[(a->values_head + a->values_len) % a->average] = value;
    a->values_len++;
    const int back = a->window / 2 + 2;
    if (value > a->enter && a->beats_len >= back) a->last_irregular = af_beat(a, -back);
    if (a->values_len < a->average) return 0;
    double ordered[AF_CAP];
    for (int k = 0; k < a->average; k++) ordered[k] = a->values[(a->values_head + k) % a->average];
    const double mean = exact_sum(ordered, a->average) / a->average;
    const double median_rr = afwin_median(&a->all_rr);
    const double spread = a->distances.ns ? afwin_median(&a->distances) : NAN;
    const double rate = median_rr != 0.0 ? 60.0 * a->fs / median_rr : NAN;
    st[0] = mean;
    st[1] = rate;
    st[2] = spread;
    const int had_first = a->has_first;
    const long long first = a->first_seq;
    a->has_first = 0;
    if (!a->active && mean > a->enter && spread > a->spread_min) {
        a->active = 1;
        a->onset = had_first ? first : af_beat(a, 0);
        *seq = a->onset;
        return 2;
    }
    if (a->active && (mean < a->leave || spread < a->spread_leave * a->spread_min)) {
        a->active = 0;
        const long long late = a->last_irregular > a->onset ? a->last_irregular : a->onset;
        const long long oldest = af_beat(a, 0);
        *seq = oldest < late ? oldest : late;
        return 3;
    }
    return 1;
}

static int AfCore_init(AfCore *a, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"fs", "window", "ref_beats", "premature", "compensatory",
                         "min_pairs", "rate_rr_s", "average", "enter", "leave", "points",
                         "spread_window", "spread", "spread_leave", "p_wave_weight", "split",
                         "split_short", "missed", NULL};
    int spread_window;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "diiddididdiidddddd", kw, &a->fs, &a->window, &a->ref_beats,
            &a->premature, &a->compensatory, &a->min_pairs, &a->rate_rr_s, &a->average,
            &a->enter, &a->leave, &a->points, &spread_window, &a->spread_min,
            &a->spread_leave, &a->p_weight, &a->split, &a->split_short, &a->missed))
        return -1;
    a->beats_cap = a->average / 2 + a->window / 2 + 2;
    if (a->window < 4 || a->window > AF_CAP || a->ref_beats < 1 || a->ref_beats > AF_CAP ||
        a->average < 1 || a->average > AF_CAP || a->beats_cap > AF_CAP || a->points < 2 ||
        a->points - 1 > AF_POINTS_MAX || spread_window < 1 || spread_window > AF_CAP ||
        !(a->fs > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "AfCore: window sizes out of range");
        return -1;
    }
    afwin_init(&a->ref, a->ref_beats);
    for (int k = 0; k < 3; k++) afwin_init(&a->lag[k], a->window);
    afwin_init(&a->kept_rr, a->window);
    afwin_init(&a->all_rr, a->window);
    afwin_init(&a->p, a->window);
    afwin_init(&a->distances, spread_window);
    af_spread_clear(a);
    a->beats_head = a->beats_len = 0;
    a->has_pending = a->prev_premature = a->kept_len = 0;
    a->values_head = a->values_len = 0;
    a->has_last = a->last_wide = a->last_noisy = a->active = a->has_first = 0;
    a->onset = a->last_irregular = a->first_seq = 0;
    return 0;
}

static PyObject *AfCore_start(AfCore *a, PyObject *args) {
    long long seq;
    int ventricular, noisy;
    if (!PyArg_ParseTuple(args, "Lpp", &seq, &ventricular, &noisy)) return NULL;
    af_start(a, seq, ventricular, noisy);
    Py_RETURN_NONE;
}

static PyObject *AfCore_push(AfCore *a, PyObject *args) {
    long long seq;
    int ventricular, noisy;
    double p_wave;
    if (!PyArg_ParseTuple(args, "Lpdp", &seq, &ventricular, &p_wave, &noisy)) return NULL;
    if (a->beats_len == 0) {
        af_start(a, seq, ventricular, noisy);
        Py_RETURN_NONE;
    }
    const double rr = (double)(seq - af_beat(a, -1));
    af_beat_append(a, seq);
    const int touches_v = ventricular || a->last_wide;
    a->last_wide = ventricular != 0;
    const int touches_noise = noisy || a->last_noisy;
    a->last_noisy = noisy != 0;
    if (a->has_pending) af_judge(a, rr);
    a->has_pending = 1;
    a->pending_rr = rr;
    a->pending_v = touches_v;
    a->pending_p = p_wave;
    a->pending_has_p = !isnan(p_wave);
    a->pending_noise = touches_noise;
    if (!touches_noise) afwin_push(&a->ref, 1, rr);
    long long at = 0;
    double st[3];
    const int what = af_decide(a, &at, st);
    if (what == 0) Py_RETURN_NONE;
    return Py_BuildValue("iLddd", what - 1, at, st[0], st[1], st[2]);
}

static PyObject *AfCore_get_active(AfCore *a, void *closure) { return PyBool_FromLong(a->active); }

static PyMethodDef AfCore_methods[] = {
    {"start", (PyCFunction)AfCore_start, METH_VARARGS,
     "start(seq, ventricular, noisy): first beat of a stream (AfDetector.start)."},
    {"push", (PyCFunction)AfCore_push, METH_VARARGS,
     "push(seq, ventricular, p_wave, noisy) -> None | (change, seq, irregularity, rate_bpm,\n"
     "spread): AfDetector.push (p_wave NaN: none). None: not judged; change 0: judged, no\n"
     "change; 1: AF began at seq; 2: AF ended at seq."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef AfCore_getset[] = {
    {"active", (getter)AfCore_get_active, NULL, "AF is under way.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject AfCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dsp._qrs_kernel.AfCore",
    .tp_doc = "dsp.af.AfDetector's state and steps, compiled (see dsp/af.py).",
    .tp_basicsize = sizeof(AfCore),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)AfCore_init,
    .tp_methods = AfCore_methods,
    .tp_getset = AfCore_getset,
};

static PyMethodDef methods[] = {
    {"sosfilt", sosfilt, METH_VARARGS, sosfilt_doc},
    {"feature", feature, METH_VARARGS, feature_doc},
    {"front", front, METH_VARARGS, front_doc},
    {"all_finite", all_finite, METH_O, all_finite_doc},
    {"sosfilt2", sosfilt2, METH_VARARGS, sosfilt2_doc},
    {"window_stats", window_stats, METH_VARARGS, window_stats_doc},
    {"peaks", peaks, METH_VARARGS, peaks_doc},
    {"candidate", candidate, METH_VARARGS, candidate_doc},
    {"beat", beat, METH_VARARGS, beat_doc},
    {"pwave", pwave, METH_VARARGS, pwave_doc},
    {"forest", forest, METH_VARARGS, forest_doc},
    {"nearest", nearest, METH_VARARGS, nearest_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "dsp._qrs_kernel",
    "Compiled inner loops of the streaming QRS detector (see dsp/qrs.py).",
    -1,
    methods,
};

PyMODINIT_FUNC PyInit__qrs_kernel(void) {
    if (PyType_Ready(&DeciderType) < 0 || PyType_Ready(&AfCoreType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&DeciderType);
    if (PyModule_AddObject(m, "Decider", (PyObject *)&DeciderType) < 0) {
        Py_DECREF(&DeciderType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&AfCoreType);
    if (PyModule_AddObject(m, "AfCore", (PyObject *)&AfCoreType) < 0) {
        Py_DECREF(&AfCoreType);
        Py_DECREF(m);
        return NULL;
    }
    /* what beat() measures, so that a build older than the Python code is not used */
    PyObject *layout = Py_BuildValue("(iii)", BEAT_FEATURES1, BEAT_FEATURES2, BEAT_STATS);
    if (layout == NULL || PyModule_AddObject(m, "beat_layout", layout) < 0) {
        Py_XDECREF(layout);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
