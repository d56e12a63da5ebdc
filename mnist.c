/*
 * mnist.c -- the owner's files: MNIST digits from IDX files, and arrays
 * from NumPy .npy files (a model's weights made elsewhere, which nn.c's
 * snn_model_import turns into a network's parameters).
 *
 * Implements no part of [SNN]; it supplies the plaintext inputs and labels
 * that the data owner secret-shares (SPEC 5: all networks run on MNIST,
 * 28x28, 10 classes).  Runs before any protocol, so it reports failures
 * through its err buffer, not through a party's sticky error.  It calls
 * nothing in the other files (make check-layers): formats only.
 *
 * IDX format [MNIST] (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"):
 *   bytes 0..3   magic, big-endian: 0x00 0x00 <type> <ndims>;
 *                type 0x08 = unsigned byte, so images are 0x00000803
 *                (3 dims) and labels 0x00000801 (1 dim)
 *   then ndims   big-endian 32-bit sizes: images n, rows, cols; labels n
 *   then         the data, one byte per element, row-major, nothing after it
 * Labels are 0..9.  Pixels are 0 (background) .. 255 (ink).
 *
 * data/ holds the official 60,000/10,000 files gzipped (data/README.md);
 * make unpacks them.  A path that is missing while path.gz exists gets the
 * command that unpacks it; a gzip-compressed file, a hint to unpack it.
 *
 * Robustness: every size product is checked for overflow, counts above
 * MNIST_MAX_N are refused before any allocation, and a file must be
 * exactly as long as its header says, so a truncated download or a wrong
 * file is reported instead of training on garbage.
 *
 * Deviations: none (not a protocol).
 */
#define _POSIX_C_SOURCE 200809L

#include "securenn.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ==== Constants and helpers ============================================ */

static const uint32_t MNIST_MAGIC_IMAGES = 0x00000803u; /* ubyte, 3 dims */
static const uint32_t MNIST_MAGIC_LABELS = 0x00000801u; /* ubyte, 1 dim  */
static const size_t   MNIST_SIDE         = 28;          /* rows == cols  */
static const size_t   MNIST_CLASSES      = 10;          /* labels 0..9   */
/* Far above the official 60,000, far below where n*784 could strain memory;
 * a header beyond it is corrupt, not a bigger data set. */
static const size_t   MNIST_MAX_N        = 10000000u;

/*
 * Formats a diagnostic into the caller's err buffer.  A macro over snprintf
 * rather than a variadic function so that -Wformat=2 checks each literal
 * format.  The result is cast to void on purpose: a message cut short by a
 * small buffer is still a correct, NUL-terminated message, and the
 * conversions used here cannot fail.
 */
#define MNIST_ERR(err, errlen, ...) ((void)snprintf((err), (errlen), __VA_ARGS__))

/*
 * be32 -- decodes a big-endian 32-bit word, the byte order of every IDX
 * header field regardless of the host.
 */
static uint32_t be32(const uint8_t b[4])
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
           ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

/* ==== Reading one IDX file ============================================= */

/*
 * read_header -- reads the magic word and ndims sizes from the start of f
 * into dims[0..ndims-1].  Checks the magic (with a hint when the file is
 * still gzip-compressed) and that the first size, the item count, is in
 * 1..MNIST_MAX_N.  Returns 0, or -1 with err naming path.
 */
static int read_header(FILE *f, const char *path, uint32_t magic, size_t *dims, size_t ndims,
                       char *err, size_t errlen)
{
    uint8_t hdr[16];
    size_t hdrlen = 4 + 4 * ndims;
    size_t got;
    uint32_t m;
    size_t i;

    /* Callers in this file pass 3 (images) or 1 (labels); hdr holds 3. */
    assert(ndims >= 1 && ndims <= 3);
    got = fread(hdr, 1, hdrlen, f);
    if (got != hdrlen) {
        if (ferror(f)) {
            MNIST_ERR(err, errlen, "%s: read error: %s", path, strerror(errno));
        } else {
            MNIST_ERR(err, errlen, "%s: file is %lu bytes, shorter than the %lu-byte IDX header",
                      path, (unsigned long)got, (unsigned long)hdrlen);
        }
        return -1;
    }
    m = be32(hdr);
    if (m != magic) {
        if (hdr[0] == 0x1f && hdr[1] == 0x8b) {
            MNIST_ERR(err, errlen, "%s: bad magic 0x%08lx: file is gzip-compressed, gunzip it first",
                      path, (unsigned long)m);
        } else {
            MNIST_ERR(err, errlen, "%s: bad magic 0x%08lx, want 0x%08lx (IDX %s file)", path,
                      (unsigned long)m, (unsigned long)magic,
                      magic == MNIST_MAGIC_IMAGES ? "images" : "labels");
        }
        return -1;
    }
    for (i = 0; i < ndims; i++) {
        dims[i] = (size_t)be32(hdr + 4 + 4 * i);
    }
    if (dims[0] == 0 || dims[0] > MNIST_MAX_N) {
        MNIST_ERR(err, errlen, "%s: header count %lu is outside 1..%lu", path,
                  (unsigned long)dims[0], (unsigned long)MNIST_MAX_N);
        return -1;
    }
    return 0;
}

/*
 * read_body -- reads exactly len bytes of data into buf, then requires end
 * of file: the IDX header fixes the length, so a short file is truncated and
 * a long one is not the file its header describes.  hdrlen only makes the
 * message give real file sizes.  Returns 0, or -1 with err naming path.
 */
/*
 * body_fits -- the file holds at least hdrlen + len bytes; checked before
 * the body is allocated, so that a header claiming billions of images in
 * a short file costs no memory.  The position is left at hdrlen.
 */
static int body_fits(FILE *f, const char *path, size_t len, size_t hdrlen, char *err, size_t errlen)
{
    long end;
    if (fseek(f, 0, SEEK_END) != 0 || (end = ftell(f)) < 0 || fseek(f, (long)hdrlen, SEEK_SET) != 0) {
        MNIST_ERR(err, errlen, "%s: cannot seek: %s", path, strerror(errno));
        return -1;
    }
    if ((unsigned long)end - hdrlen < len) {
        MNIST_ERR(err, errlen, "%s: file is %lu bytes, shorter than the %lu its header says", path,
                  (unsigned long)end, (unsigned long)(hdrlen + len));
        return -1;
    }
    return 0;
}

static int read_body(FILE *f, const char *path, uint8_t *buf, size_t len, size_t hdrlen,
                     char *err, size_t errlen)
{
    size_t got = fread(buf, 1, len, f);

    if (got != len) {
        if (ferror(f)) {
            MNIST_ERR(err, errlen, "%s: read error: %s", path, strerror(errno));
        } else {
            MNIST_ERR(err, errlen, "%s: file is %lu bytes, shorter than the %lu its header says",
                      path, (unsigned long)(hdrlen + got), (unsigned long)(hdrlen + len));
        }
        return -1;
    }
    if (fgetc(f) != EOF) {
        MNIST_ERR(err, errlen, "%s: file is longer than the %lu bytes its header says", path,
                  (unsigned long)(hdrlen + len));
        return -1;
    }
    if (ferror(f)) {
        MNIST_ERR(err, errlen, "%s: read error: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * open_file -- fopen for binary reading, with the path and the system's
 * reason (usually "No such file or directory") in err on failure, and the
 * command that unpacks it when only path.gz is there.
 */
static FILE *open_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        int e = errno;
        char gz[4096];
        FILE *g = NULL;
        if (e == ENOENT && strlen(path) + 4 < sizeof gz) {
            snprintf(gz, sizeof gz, "%s.gz", path);
            g = fopen(gz, "rb");
        }
        if (g != NULL) {
            fclose(g);
            MNIST_ERR(err, errlen, "%s: cannot open: %s; %s is there: unpack it with 'make mnist' "
                      "(or gzip -dc %s > %s)", path, strerror(e), gz, gz, path);
        } else {
            MNIST_ERR(err, errlen, "%s: cannot open: %s", path, strerror(e));
        }
    }
    return f;
}

/* ==== Public API ======================================================= */

/*
 * snn_mnist_load_files -- loads an IDX images file and its IDX labels file.
 * Both headers are checked (magic, 28x28, counts equal and in range) before
 * anything is allocated; then both bodies are read in full and every label
 * must be 0..9.
 * d:      overwritten without being freed, so it must not hold a data set
 *         (call snn_mnist_free first); on error it is left empty.
 * err:    receives a one-line message naming the file on error; may be NULL
 *         (then errlen is ignored).
 * Returns 0, or -1.
 */
int snn_mnist_load_files(snn_mnist *d, const char *images_path, const char *labels_path,
                         char *err, size_t errlen)
{
    FILE *fi = NULL;
    FILE *fl = NULL;
    size_t idims[3];
    size_t ldims[1];
    size_t npix = 0;
    snn_mnist tmp = {0, 0, 0, NULL, NULL};
    size_t i;
    int rc = -1;

    if (err == NULL) {
        errlen = 0; /* snprintf(NULL, 0, ...) is defined and writes nothing */
    }
    if (d == NULL || images_path == NULL || labels_path == NULL) {
        MNIST_ERR(err, errlen, "snn_mnist_load_files: NULL argument");
        return -1;
    }
    *d = tmp;

    /* Headers first, so that a mismatched pair fails before a 47 MB read. */
    fi = open_file(images_path, err, errlen);
    if (fi == NULL) {
        goto cleanup;
    }
    if (read_header(fi, images_path, MNIST_MAGIC_IMAGES, idims, 3, err, errlen) != 0) {
        goto cleanup;
    }
    /* The networks of SPEC 5 have 784-input and 28x28-conv first layers. */
    if (idims[1] != MNIST_SIDE || idims[2] != MNIST_SIDE) {
        MNIST_ERR(err, errlen, "%s: images are %lux%lu, want %lux%lu", images_path,
                  (unsigned long)idims[1], (unsigned long)idims[2], (unsigned long)MNIST_SIDE,
                  (unsigned long)MNIST_SIDE);
        goto cleanup;
    }
    fl = open_file(labels_path, err, errlen);
    if (fl == NULL) {
        goto cleanup;
    }
    if (read_header(fl, labels_path, MNIST_MAGIC_LABELS, ldims, 1, err, errlen) != 0) {
        goto cleanup;
    }
    if (idims[0] != ldims[0]) {
        MNIST_ERR(err, errlen, "%s has %lu images but %s has %lu labels: count mismatch",
                  images_path, (unsigned long)idims[0], labels_path, (unsigned long)ldims[0]);
        goto cleanup;
    }

    tmp.n = idims[0];
    tmp.rows = idims[1];
    tmp.cols = idims[2];
    if (snn_size_mul(&npix, tmp.rows, tmp.cols) != 0 || snn_size_mul(&npix, npix, tmp.n) != 0) {
        MNIST_ERR(err, errlen, "%s: %lu x %lu x %lu pixels overflow size_t", images_path,
                  (unsigned long)tmp.n, (unsigned long)tmp.rows, (unsigned long)tmp.cols);
        goto cleanup;
    }
    if (body_fits(fi, images_path, npix, 16, err, errlen) != 0
        || body_fits(fl, labels_path, tmp.n, 8, err, errlen) != 0) {
        goto cleanup;
    }
    tmp.images = malloc(npix);
    tmp.labels = malloc(tmp.n);
    if (tmp.images == NULL || tmp.labels == NULL) {
        MNIST_ERR(err, errlen, "%s: out of memory for %lu images", images_path,
                  (unsigned long)tmp.n);
        goto cleanup;
    }
    if (read_body(fi, images_path, tmp.images, npix, 16, err, errlen) != 0) {
        goto cleanup;
    }
    if (read_body(fl, labels_path, tmp.labels, tmp.n, 8, err, errlen) != 0) {
        goto cleanup;
    }
    for (i = 0; i < tmp.n; i++) {
        /* Labels index 10-way one-hot vectors downstream; catch bad ones here. */
        if ((size_t)tmp.labels[i] >= MNIST_CLASSES) {
            MNIST_ERR(err, errlen, "%s: label %u at index %lu is not a digit 0..9", labels_path,
                      (unsigned)tmp.labels[i], (unsigned long)i);
            goto cleanup;
        }
    }

    *d = tmp;
    tmp.images = NULL; /* ownership moved to *d */
    tmp.labels = NULL;
    rc = 0;

cleanup:
    /* Streams opened for reading only: fclose cannot lose data, and every
     * byte has already been read and checked, so its result is ignored. */
    if (fi != NULL) {
        (void)fclose(fi);
    }
    if (fl != NULL) {
        (void)fclose(fl);
    }
    free(tmp.images);
    free(tmp.labels);
    return rc;
}

/*
 * join_path -- returns malloc'd "dir/name" (no doubled '/' when dir already
 * ends in one), or NULL when out of memory.  The caller frees it.
 */
static char *join_path(const char *dir, const char *name)
{
    size_t ld = strlen(dir);
    size_t ln = strlen(name);
    int slash = (ld > 0 && dir[ld - 1] != '/');
    size_t len = ld + (size_t)slash + ln + 1; /* string lengths: cannot overflow */
    char *p = malloc(len);

    if (p == NULL) {
        return NULL;
    }
    memcpy(p, dir, ld);
    if (slash) {
        p[ld] = '/';
    }
    memcpy(p + ld + (size_t)slash, name, ln + 1);
    return p;
}

/*
 * snn_mnist_load -- loads split "train" (train-images-idx3-ubyte,
 * train-labels-idx1-ubyte) or "test" (t10k-images-idx3-ubyte,
 * t10k-labels-idx1-ubyte) from directory dir: the official MNIST names, so
 * dir may be data/ or a folder holding the gunzipped official files.
 * Checks that dir exists first, so a mistyped --data names the directory
 * rather than a file inside it.  Same contract for d and err as
 * snn_mnist_load_files.  Returns 0, or -1.
 */
int snn_mnist_load(snn_mnist *d, const char *dir, const char *split, char *err, size_t errlen)
{
    struct stat st;
    const char *iname;
    const char *lname;
    char *ipath = NULL;
    char *lpath = NULL;
    int rc = -1;

    if (err == NULL) {
        errlen = 0;
    }
    if (d == NULL || dir == NULL || split == NULL) {
        MNIST_ERR(err, errlen, "snn_mnist_load: NULL argument");
        return -1;
    }
    d->n = 0;
    d->rows = 0;
    d->cols = 0;
    d->images = NULL;
    d->labels = NULL;

    if (strcmp(split, "train") == 0) {
        iname = "train-images-idx3-ubyte";
        lname = "train-labels-idx1-ubyte";
    } else if (strcmp(split, "test") == 0) {
        iname = "t10k-images-idx3-ubyte"; /* the official MNIST test-set names */
        lname = "t10k-labels-idx1-ubyte";
    } else {
        MNIST_ERR(err, errlen, "unknown MNIST split \"%s\", want \"train\" or \"test\"", split);
        return -1;
    }
    if (stat(dir, &st) != 0) {
        MNIST_ERR(err, errlen, "data directory %s: %s%s", dir, strerror(errno),
                  errno == ENOENT ? " (give --data DIR, or run where 'make mnist' unpacked data/)" : "");
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        MNIST_ERR(err, errlen, "data directory %s: not a directory", dir);
        return -1;
    }

    /* Two short strings; cheaper to build than to bound with PATH_MAX. */
    ipath = join_path(dir, iname);
    lpath = join_path(dir, lname);
    if (ipath == NULL || lpath == NULL) {
        MNIST_ERR(err, errlen, "data directory %s: out of memory", dir);
        goto cleanup;
    }
    rc = snn_mnist_load_files(d, ipath, lpath, err, errlen);

cleanup:
    free(ipath);
    free(lpath);
    return rc;
}

/*
 * snn_mnist_free -- frees the pixels and labels and resets d to empty, so a
 * second call, or a call on a d that failed to load, is harmless.  d may be
 * NULL.
 */
void snn_mnist_free(snn_mnist *d)
{
    if (d == NULL) {
        return;
    }
    free(d->images);
    free(d->labels);
    d->n = 0;
    d->rows = 0;
    d->cols = 0;
    d->images = NULL;
    d->labels = NULL;
}

/* ==== The owner's NumPy files: .npy ==================================== */
/*
 * The .npy format (NumPy's numpy/lib/format.py, "format version 1.0" to
 * "3.0"): the magic "\x93NUMPY", major and minor version bytes, the header
 * length (2 bytes little-endian in version 1, 4 bytes in 2 and 3), then
 * that many bytes of ASCII header, a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (128, 784), }
 * padded with spaces and a newline, then the raw data.  This reader takes
 * little-endian float32 ('<f4') and float64 ('<f8') in C order only, at
 * most 4 dimensions, and requires the data to fill the file exactly.
 */

#define NPY_MAX_FILE  ((size_t)1 << 28)   /* 256 MiB, far above network C */
#define NPY_MAX_DIM   4

/* The value of key in the header dict: a pointer just past "'key':" and
 * its spaces, or NULL. */
static const char *npy_key(const char *hdr, const char *key)
{
    char pat[32];
    const char *v;
    snprintf(pat, sizeof pat, "'%s':", key);
    if (!(v = strstr(hdr, pat))) {
        snprintf(pat, sizeof pat, "\"%s\":", key);
        if (!(v = strstr(hdr, pat))) return NULL;
    }
    v += strlen(pat);
    while (*v == ' ') v++;
    return v;
}

/* The whole file at path into *buf (malloc'd; *len bytes), at most
 * NPY_MAX_FILE.  0, or -1 with a message. */
static int npy_read_file(const char *path, unsigned char **buf, size_t *len, char *err, size_t errlen)
{
    size_t cap = 1 << 16;
    FILE *f;
    int rc = -1;
    *buf = NULL;
    *len = 0;
    if (!(f = fopen(path, "rb"))) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t got;
        if (!*buf && !(*buf = malloc(cap))) { snprintf(err, errlen, "%s: out of memory", path); goto cleanup; }
        if (*len == cap) {
            unsigned char *nb;
            if (cap >= NPY_MAX_FILE) {
                snprintf(err, errlen, "%s: larger than %zu MiB, more than any layer of networks A-D", path,
                         NPY_MAX_FILE >> 20);
                goto cleanup;
            }
            if (!(nb = realloc(*buf, cap * 2))) { snprintf(err, errlen, "%s: out of memory", path); goto cleanup; }
            *buf = nb;
            cap *= 2;
        }
        got = fread(*buf + *len, 1, cap - *len, f);
        *len += got;
        if (got == 0) break;
    }
    if (ferror(f)) { snprintf(err, errlen, "%s: read error", path); goto cleanup; }
    rc = 0;
cleanup:
    fclose(f);
    return rc;
}

/* The header dict hdr: the element size (4 or 8), the shape (*ndim
 * dimensions) and the element count.  0, or -1 with a message. */
static int npy_header(const char *path, const char *hdr, size_t *esz, size_t shape[4], size_t *ndim, size_t *count,
                      char *err, size_t errlen)
{
    const char *v;
    size_t d = 0;
    *count = 1;
    /* 'descr': '<f4' or '<f8' */
    if (!(v = npy_key(hdr, "descr")) || (*v != '\'' && *v != '"')) {
        snprintf(err, errlen, "%s: .npy header without 'descr'", path);
        return -1;
    }
    if (strncmp(v + 1, "<f4", 3) == 0 && v[4] == v[0]) *esz = 4;
    else if (strncmp(v + 1, "<f8", 3) == 0 && v[4] == v[0]) *esz = 8;
    else {
        const char *e = strchr(v + 1, v[0]);
        snprintf(err, errlen, "%s: data type %.*s; this program reads little-endian float32 ('<f4') and "
                 "float64 ('<f8')", path, e ? (int)(e - v + 1) : 8, v);
        return -1;
    }
    /* 'fortran_order': False */
    if (!(v = npy_key(hdr, "fortran_order")) || (strncmp(v, "False", 5) != 0 && strncmp(v, "True", 4) != 0)) {
        snprintf(err, errlen, "%s: .npy header without 'fortran_order'", path);
        return -1;
    }
    if (v[0] == 'T') {
        snprintf(err, errlen, "%s: Fortran order; save a C-order array (numpy.ascontiguousarray)", path);
        return -1;
    }
    /* 'shape': (d0, d1, ...) */
    if (!(v = npy_key(hdr, "shape")) || *v != '(') {
        snprintf(err, errlen, "%s: .npy header without 'shape'", path);
        return -1;
    }
    for (v++;;) {
        uint64_t dim = 0;
        while (*v == ' ') v++;
        if (*v == ')') break;
        if (*v < '0' || *v > '9' || d == NPY_MAX_DIM) {
            snprintf(err, errlen, "%s: bad or more than %d-dimensional 'shape' in the .npy header", path, NPY_MAX_DIM);
            return -1;
        }
        while (*v >= '0' && *v <= '9') {
            dim = dim * 10 + (uint64_t)(*v++ - '0');
            if (dim > NPY_MAX_FILE) { snprintf(err, errlen, "%s: a dimension too large", path); return -1; }
        }
        shape[d++] = (size_t)dim;
        *count *= (size_t)dim;
        if (*count > NPY_MAX_FILE) { snprintf(err, errlen, "%s: too many elements", path); return -1; }
        while (*v == ' ') v++;
        if (*v == ',') v++;
        else if (*v != ')') { snprintf(err, errlen, "%s: bad 'shape' in the .npy header", path); return -1; }
    }
    *ndim = d;
    return 0;
}

/* snn_npy_load -- see securenn.h. */
int snn_npy_load(const char *path, double **out, size_t shape[4], size_t *ndim, char *err, size_t errlen)
{
    unsigned char *buf = NULL;
    char *hdr = NULL;
    size_t len = 0, hlen, hoff, esz = 0, count = 0, i, d = 0;
    double *x = NULL;
    int rc = -1;

    *out = NULL;
    *ndim = 0;
    if (npy_read_file(path, &buf, &len, err, errlen) != 0) goto cleanup;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        snprintf(err, errlen, "%s: not a NumPy .npy file (bad magic)", path);
        goto cleanup;
    }
    if (buf[6] < 1 || buf[6] > 3) {
        snprintf(err, errlen, "%s: .npy format version %u.%u, this program reads 1.0 to 3.0", path,
                 (unsigned)buf[6], (unsigned)buf[7]);
        goto cleanup;
    }
    if (buf[6] == 1) { hlen = (size_t)snn_load16_le(buf + 8); hoff = 10; }
    else if (len >= 12) { hlen = (size_t)snn_load32_le(buf + 8); hoff = 12; }
    else { snprintf(err, errlen, "%s: truncated .npy header", path); goto cleanup; }
    if (hlen > len - hoff) {
        snprintf(err, errlen, "%s: truncated .npy header (%zu bytes announced, %zu in the file)", path, hlen,
                 len - hoff);
        goto cleanup;
    }
    if (!(hdr = malloc(hlen + 1))) { snprintf(err, errlen, "%s: out of memory", path); goto cleanup; }
    memcpy(hdr, buf + hoff, hlen);
    hdr[hlen] = '\0';
    if (strlen(hdr) != hlen) { snprintf(err, errlen, "%s: a NUL byte in the .npy header", path); goto cleanup; }
    if (npy_header(path, hdr, &esz, shape, &d, &count, err, errlen) != 0) goto cleanup;
    if (len - hoff - hlen != count * esz) {
        snprintf(err, errlen, "%s: %zu data bytes, the header's shape and type need %zu", path, len - hoff - hlen,
                 count * esz);
        goto cleanup;
    }
    if (!(x = malloc((count ? count : 1) * sizeof *x))) { snprintf(err, errlen, "%s: out of memory", path); goto cleanup; }
    for (i = 0; i < count; i++) {
        const unsigned char *e = buf + hoff + hlen + esz * i;
        if (esz == 4) {
            uint32_t w = snn_load32_le(e);
            float fv;
            memcpy(&fv, &w, 4);
            x[i] = (double)fv;
        } else {
            uint64_t w = snn_load64_le(e);
            memcpy(&x[i], &w, 8);
        }
    }
    *out = x;
    x = NULL;
    *ndim = d;
    rc = 0;
cleanup:
    free(buf);
    free(hdr);
    free(x);
    return rc;
}
