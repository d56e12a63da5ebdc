/*
 * nn.c -- neural networks over the protocols of [SNN]: layers as forward /
 * backward pairs on shares, the networks A-D, training with SGD, the
 * plaintext fixed-point twin, model files, the owner and server sides of a
 * job, and (under SNN_PROGRAM) the program ./securenn.
 *
 * Implements [SNN, App. B] and SPEC sections 2.11 (linear and convolution
 * layers by im2col), 2.12 (training: ASM output, output error, backprop,
 * SGD as one truncation) and 5 (networks A-D, hyperparameters), on top of
 * Pi_MatMul, Pi_ReLU, Pi_Division, Pi_Maxpool and Pi_DMaxpool (securenn.c).
 *
 * Sections.  The core first, readable in one go (as llm.c's train_gpt2.c):
 *    1. Networks A-D [SNN, App. B]: the layer descriptors
 *    2. Operations and their plaintext twins: the one context of both
 *    3. Local reshaping: im2col, col2im, windows, SGD
 *    4-7. Layers as forward/backward pairs: FC, convolution, ReLU, Maxpool
 *    8. Layers: dispatch
 *    9. Networks: forward, ASM, predict, the training step (snn_nn_train_step)
 *   10. The training loops: the twin's (snn_plain_train) and the servers'
 *       (serve_train), batches; the twin's inference
 * then what surrounds it:
 *   11. The error bound of secure inference, the range check of a model
 *   12. Owner-side encodings and initial weights
 *   13. Model files, checkpoints, a model from NumPy (.npy: mnist.c)
 *   14. Jobs: the job block, the servers' side (snn_nn_run_job) and the
 *       owner's side (snn_nn_owner)
 *   15. Transcripts: a party's view, frame by frame
 * and the program ./securenn (16, under SNN_PROGRAM), with its own index.
 *
 * Layout: activations are row-major with the batch first; images and
 * feature maps are NHWC (channels fastest), so the product of an im2col
 * patch matrix with the filters is the next layer's input as it stands.
 * Fixed point with f = 13 fractional bits end to end; no floating point
 * touches a share or the twin (floats only print progress).
 *
 * The plaintext twin: every layer below is written once, over the
 * operations of section 2 (nn_matmul, nn_relu, ...).  Each operation is a
 * protocol call when the context holds a party, and its plaintext twin
 * (plain_matmul, plain_relu, ... right beside it) when it does not.  So the
 * twin runs the same integer steps in the same order, with exact floor
 * truncation where the protocol's is floor or floor + 1 (SPEC 1.3).
 *
 * Deviations and choices (also in the README's Deviations):
 *   - B and C run conv -> Maxpool -> ReLU (CODE order, SPEC 2.11) instead of
 *     conv -> ReLU -> Maxpool: ReLU is monotone, so the forward pass is
 *     identical bit for bit, with 4x fewer DReLUs in the ReLU.  The backward
 *     pass differs only for a window whose maximum is exactly 0 while its
 *     last element is negative: then this order passes the gradient to the
 *     (last) zero element, DReLU(0) = 1, and the other order passes none.
 *   - Network D (inference only in [SNN]): convolution 5x5, stride 2, zero
 *     padding 2, 5 channels, so 5 x 14 x 14 = 980 outputs as App. B's
 *     FC 980 -> 100 requires (the padding is not stated, SPEC 5).  No
 *     Maxpool (App. B; Fig. 4 differs, SPEC 4.1).
 *   - Network A: CODE's ReLU after the last FC layer is the ReLU inside
 *     ASM, so it is not a layer of its own.
 *   - ASM(u)_i = ReLU(u_i) / (sum_k ReLU(u_k) + 2^-13): one LSB is added to
 *     the denominator so that it is never 0 (all ReLU(u_k) = 0 gives ASM = 0
 *     and the error -y).  It moves the quotient by at most
 *     2^13 / (sum + 1) LSB, i.e. at most 1 LSB once the sum reaches 1.0.
 *   - The output error delta = ASM(u) - y is taken as the gradient of the
 *     logits u (SPEC 2.12: ASM, including its ReLU, is not differentiated).
 *   - Inference predicts argmax_k u_k by Pi_Maxpool's index (SPEC 2.12);
 *     ASM is computed only in training.
 *   - Weights: Glorot uniform in +-sqrt(6 / (fan_in + fan_out)), computed
 *     with an integer square root; biases 0 (CODE: all weights 1.0,
 *     SPEC 4.3 d).
 *   - The output error is delta = ASM(u) - y + 2^-6 u: the gradient of
 *     SPEC 2.12's error plus a logit penalty 2^-7 |u|^2 (SPEC 4.5 b), one local
 *     truncation.  Without it the logits grow without bound and B and C
 *     do not train (see snn_nn_train_step).
 *   - The twin truncates by exact floor, except that when its state holds
 *     a rounding stream (training in the demo and --plain) it rounds
 *     stochastically, which is the distribution of the protocol's own
 *     truncation (see plain_truncate); with floor the twin drifts by
 *     -1/2 LSB per weight and step and does not track the secure training.
 *
 * Messages of a job (all in net.c's inventory; owner = SNN_CLIENT):
 *   Setup  2 bytes  owner -> P0,P1,P2  the job block (format at job_encode)
 *   Setup  4 Z_L    P0 -> owner        flow control: before each training
 *                                      step, the step whose batch it wants
 *   Share  2 Z_L    owner -> P0,P1     parameters; per step images, labels
 *   Reveal 1 Z_L    P0,P1 -> owner     training: ASM outputs of each step
 *                                      (progress), the weights at each
 *                                      checkpoint and the trained weights;
 *                                      inference: predicted classes;
 *                                      traffic counters (see serve_traffic)
 * The owner holds the data and the model, so everything revealed to it is
 * its own; P2 receives nothing from the owner and reveals nothing.
 */
#define _POSIX_C_SOURCE 200809L

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "securenn.h"

#define F SNN_F                       /* fractional bits */
#define NN_MAX_BATCH 256              /* memory: C's conv2 backward is ~1.4 MB per sample */
#define NN_MAX_ITERS 10000000u
#define NN_MAX_LR_SHIFT 30u
#define NN_LOGIT_SHIFT 6u             /* the output error's logit penalty 2^-6 u (snn_nn_train_step) */

/* ==== 1. Networks [SNN, App. B], SPEC 5 ================================== */

/* snn_layer_fc -- FC in -> out: weights in x out, biases out. */
void snn_layer_fc(snn_layer *L, size_t in, size_t out)
{
    memset(L, 0, sizeof *L);
    L->kind = SNN_LAYER_FC;
    L->c = in; L->h = L->w = 1;
    L->oc = out; L->oh = L->ow = 1;
    L->k = L->stride = 1;
    L->nw = in * out;
    L->nb = out;
    L->boff = L->nw;
}

/* snn_layer_conv -- convolution of an h x w x c input with oc filters of
 * k x k x c, stride and zero padding as given; output oh x ow x oc. */
void snn_layer_conv(snn_layer *L, size_t c, size_t h, size_t w, size_t oc,
                    size_t k, size_t stride, size_t pad)
{
    memset(L, 0, sizeof *L);
    L->kind = SNN_LAYER_CONV;
    L->c = c; L->h = h; L->w = w;
    L->oc = oc;
    L->k = k; L->stride = stride; L->pad = pad;
    L->oh = (h + 2 * pad - k) / stride + 1;
    L->ow = (w + 2 * pad - k) / stride + 1;
    L->nw = k * k * c * oc;
    L->nb = oc;
    L->boff = L->nw;
}

/* snn_layer_relu -- element-wise ReLU on h x w x c. */
void snn_layer_relu(snn_layer *L, size_t c, size_t h, size_t w)
{
    memset(L, 0, sizeof *L);
    L->kind = SNN_LAYER_RELU;
    L->c = L->oc = c; L->h = L->oh = h; L->w = L->ow = w;
    L->k = L->stride = 1;
}

/* snn_layer_maxpool -- k x k windows with stride k on h x w x c. */
void snn_layer_maxpool(snn_layer *L, size_t c, size_t h, size_t w, size_t k)
{
    memset(L, 0, sizeof *L);
    L->kind = SNN_LAYER_MAXPOOL;
    L->c = L->oc = c; L->h = h; L->w = w;
    L->k = L->stride = k;
    L->oh = h / k; L->ow = w / k;
}

/* Elements of one sample's input and output. */
size_t snn_layer_in_size(const snn_layer *L) { return L->c * L->h * L->w; }
size_t snn_layer_out_size(const snn_layer *L) { return L->oc * L->oh * L->ow; }

/* Appends L to net, placing its parameters after those already there. */
static void net_push(snn_net *net, const snn_layer *L)
{
    snn_layer *d;
    assert(net->nlayer < SNN_NN_MAXLAYER);     /* the networks of snn_net_init fit */
    d = &net->layer[net->nlayer++];
    *d = *L;
    d->woff = net->nparam;
    d->boff = net->nparam + d->nw;
    net->nparam += d->nw + d->nb;
}

/*
 * snn_net_init -- the networks of SPEC 5 ([SNN, App. B], CODE main.cpp):
 *   A  FC 784-128, ReLU, FC 128-128, ReLU, FC 128-10            (-> ASM)
 *   B  conv 5x5 1->16 (24x24), MP 2x2, ReLU, conv 5x5 16->16 (8x8), MP 2x2,
 *      ReLU, FC 256-100, ReLU, FC 100-10                       (-> ASM)
 *   C  as B with 20 and 50 channels, FC 800-500, ReLU, FC 500-10 (-> ASM)
 *   D  conv 5x5 stride 2 pad 2 1->5 (14x14), ReLU, FC 980-100, ReLU,
 *      FC 100-10                                            (-> argmax)
 * Maxpool before ReLU in B and C: see the file comment.
 */
int snn_net_init(snn_net *net, int id)
{
    snn_layer L;
    memset(net, 0, sizeof *net);
    net->id = id;
    switch (id) {
    case SNN_NET_A:
        snn_layer_fc(&L, 784, 128);              net_push(net, &L);
        snn_layer_relu(&L, 128, 1, 1);           net_push(net, &L);
        snn_layer_fc(&L, 128, 128);              net_push(net, &L);
        snn_layer_relu(&L, 128, 1, 1);           net_push(net, &L);
        snn_layer_fc(&L, 128, 10);               net_push(net, &L);
        return 0;
    case SNN_NET_B:
    case SNN_NET_C: {
        size_t c1 = id == SNN_NET_B ? 16 : 20, c2 = id == SNN_NET_B ? 16 : 50;
        size_t hid = id == SNN_NET_B ? 100 : 500;
        snn_layer_conv(&L, 1, 28, 28, c1, 5, 1, 0);  net_push(net, &L);   /* 24x24xc1 */
        snn_layer_maxpool(&L, c1, 24, 24, 2);        net_push(net, &L);   /* 12x12xc1 */
        snn_layer_relu(&L, c1, 12, 12);              net_push(net, &L);
        snn_layer_conv(&L, c1, 12, 12, c2, 5, 1, 0); net_push(net, &L);   /* 8x8xc2   */
        snn_layer_maxpool(&L, c2, 8, 8, 2);          net_push(net, &L);   /* 4x4xc2   */
        snn_layer_relu(&L, c2, 4, 4);                net_push(net, &L);
        snn_layer_fc(&L, 16 * c2, hid);              net_push(net, &L);
        snn_layer_relu(&L, hid, 1, 1);               net_push(net, &L);
        snn_layer_fc(&L, hid, 10);                   net_push(net, &L);
        return 0;
    }
    case SNN_NET_D:
        /* 980 = 5 x 14 x 14 (App. B) needs padding 2 with stride 2 */
        snn_layer_conv(&L, 1, 28, 28, 5, 5, 2, 2);   net_push(net, &L);   /* 14x14x5 */
        snn_layer_relu(&L, 5, 14, 14);               net_push(net, &L);
        snn_layer_fc(&L, 980, 100);                  net_push(net, &L);
        snn_layer_relu(&L, 100, 1, 1);               net_push(net, &L);
        snn_layer_fc(&L, 100, 10);                   net_push(net, &L);
        return 0;
    default:
        return -1;
    }
}

/* snn_net_name -- "A".."D", or "?" for an unknown id. */
const char *snn_net_name(int id)
{
    /* char arrays, not pointers: no relocation, so it stays in .rodata */
    static const char names[SNN_NET_COUNT][2] = { "A", "B", "C", "D" };
    return id >= 0 && id < SNN_NET_COUNT ? names[id] : "?";
}

/* snn_net_parse -- "A".."D" (either case) to the id, or -1. */
int snn_net_parse(const char *s)
{
    if (s[0] != '\0' && s[1] == '\0') {
        if (s[0] >= 'A' && s[0] <= 'D') return s[0] - 'A';
        if (s[0] >= 'a' && s[0] <= 'd') return s[0] - 'a';
    }
    return -1;
}

/* ==== 2. Operations and their plaintext twins ============================ */
/*
 * Every layer goes through these, with one context (snn_nn_ctx, in
 * securenn.h) for both paths: c->p is the executing server (P0, P1 or P2),
 * or NULL for the plaintext twin, which then runs the plain_ function
 * beside each operation on the values themselves.  Every public layer and
 * network function below takes that context: there is no second, twin
 * copy of any of them.
 */

/* |s(x)|, the absolute value of the signed view, as an unsigned. */
static uint64_t abs_signed(uint64_t x) { return (x >> 63) ? (uint64_t)0 - x : x; }

/* Whether a secure context's party already holds an error (sticky: every
 * public function then returns -1 at once). */
static int ctx_failed(const snn_nn_ctx *c)
{
    return c->p != NULL && c->p->err != SNN_OK;
}

/* snn_nn_secure -- the context of the secure computation at server p. */
snn_nn_ctx snn_nn_secure(snn_party *p)
{
    snn_nn_ctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    return c;
}

/* snn_nn_twin -- the context of the plaintext twin: truncation rounds
 * from round (NULL: exact floor); trunc (or NULL) counts truncations. */
snn_nn_ctx snn_nn_twin(snn_prg *round, snn_trunc_stats *trunc)
{
    snn_nn_ctx c;
    memset(&c, 0, sizeof c);
    c.round = round;
    c.trunc = trunc;
    return c;
}

/* The twin's context with its first error kept in err (errlen 0: none). */
static snn_nn_ctx *ctx_twin(snn_nn_ctx *c, snn_prg *round, char *err, size_t errlen)
{
    c->p = NULL;
    c->round = round;
    c->err = errlen ? err : NULL;
    c->errlen = errlen;
    c->trunc = NULL;
    if (c->err) c->err[0] = '\0';
    return c;
}

/* A failure of either path with its reason: the party's sticky error, or
 * the twin's first message.  Returns -1. */
static int nn_fail(snn_nn_ctx *c, enum snn_err e, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int nn_fail(snn_nn_ctx *c, enum snn_err e, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->p) return snn_fail(c->p, e, "%s", msg);
    if (c->err && c->err[0] == '\0') snprintf(c->err, c->errlen, "%s", msg);
    return -1;
}

/* Zeroed Z_L vector of n elements (at least one), or NULL if out of memory
 * or n elements do not fit a size_t.  Release with nn_free(x, n). */
static uint64_t *nn_alloc(size_t n)
{
    size_t bytes;
    if (snn_size_mul(&bytes, n ? n : 1, sizeof(uint64_t)) != 0) return NULL;
    return calloc(n ? n : 1, sizeof(uint64_t));
}

/* Releases an nn_alloc vector of n elements: shares, so wiped first. */
static void nn_free(uint64_t *x, size_t n)
{
    snn_free_wiped(x, (n ? n : 1) * sizeof *x);
}

/* Out of memory, with where it happened. */
static int nn_nomem(snn_nn_ctx *c, const char *where)
{
    return nn_fail(c, SNN_ERR_NOMEM, "%s: out of memory", where);
}

/* nn_matmul -- Pi_MatMul [SNN, Alg. 1]; no truncation. */
static int nn_matmul(snn_nn_ctx *c, uint64_t *W, const uint64_t *X, const uint64_t *Y,
                     size_t m, size_t n, size_t v, int tx, int ty)
{
    if (c->p) return snn_matmul(c->p, W, X, Y, m, n, v, tx, ty);
    snn_plain_matmul(W, X, Y, m, n, v, tx, ty);      /* the twin */
    return 0;
}

/* z_i = x_i y_i over Z_L. */
static void plain_mul(uint64_t *z, const uint64_t *x, const uint64_t *y, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) z[i] = x[i] * y[i];
}

/* nn_mul -- element-wise Pi_MatMul; no truncation (one factor is 0/1). */
static int nn_mul(snn_nn_ctx *c, uint64_t *z, const uint64_t *x, const uint64_t *y, size_t n)
{
    if (c->p) return snn_mul(c->p, z, x, y, n);
    plain_mul(z, x, y, n);
    return 0;
}

/*
 * The twin's truncation by d bits.  Without a rounding stream: exact
 * floor(s(x) / 2^d), where the protocol gives this or one more.  With one
 * (the twin's training, c->round): floor((x + rho) / 2^d), rho uniform in
 * [0, 2^d), i.e. floor + 1 with probability R / 2^d for the remainder R:
 * the distribution of the protocol's own truncation, whose floor + 1 comes
 * with probability R / 2^d from P0's uniform share (SPEC 1.3).  Unbiased,
 * where floor is biased by -1/2 LSB: in training that bias reaches every
 * weight at every step (most SGD steps are a few LSB) and costs A 10-40
 * points of accuracy.
 */
static void plain_truncate(uint64_t *y, const uint64_t *x, size_t n, unsigned d, snn_prg *round,
                           snn_trunc_stats *st)
{
    const uint64_t mask = ((uint64_t)1 << d) - 1;
    size_t i;
    assert(d < 64);                 /* f + shift <= 13 + 8 + 30 (snn_job_check) */
    if (st) {
        /* the protocol's truncation of v fails with probability about |v| / 2^64 (SPEC 1.3) */
        st->count += n;
        for (i = 0; i < n; i++) st->fail += (double)abs_signed(x[i]) / 18446744073709551616.0;
    }
    for (i = 0; i < n; i++) y[i] = snn_sar(x[i] + (round && d ? snn_prg_u64(round) & mask : 0), d);
}

/* nn_truncate -- [SNN, Alg. 11], local; y may equal x; d < 64. */
static int nn_truncate(snn_nn_ctx *c, uint64_t *y, const uint64_t *x, size_t n, unsigned d)
{
    if (c->p) {
        snn_truncate(c->p, y, x, n, d);
        return c->p->err ? -1 : 0;
    }
    plain_truncate(y, x, n, d, c->round, c->trunc);
    return 0;
}

/* ReLU and DReLU exactly: DReLU(x) = [s(x) >= 0] (SPEC 2.6). */
static void plain_relu(uint64_t *y, uint64_t *drelu, const uint64_t *x, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        uint64_t b = (x[i] >> 63) ^ 1;
        if (drelu) drelu[i] = b;
        y[i] = b ? x[i] : 0;
    }
}

/* nn_relu -- Pi_ReLU [SNN, Alg. 7]; drelu (may be NULL) keeps the bits. */
static int nn_relu(snn_nn_ctx *c, uint64_t *y, uint64_t *drelu, const uint64_t *x, size_t n)
{
    if (c->p) return snn_relu(c->p, y, drelu, x, n);
    plain_relu(y, drelu, x, n);
    return 0;
}

/* Maxpool as SPEC 2.9: max <- x_i when DReLU(x_i - max) = 1, so ties go
 * to the later element, exactly as Pi_Maxpool. */
static void plain_maxpool(uint64_t *max, uint64_t *ind, const uint64_t *x, size_t nwin, size_t k)
{
    size_t w, i;
    assert(k > 0);
    for (w = 0; w < nwin; w++) {
        const uint64_t *v = x + w * k;
        uint64_t m = v[0], at = 0;
        for (i = 1; i < k; i++)
            if (((v[i] - m) >> 63) == 0) { m = v[i]; at = i; }
        max[w] = m;
        if (ind) ind[w] = at;
    }
}

/* nn_maxpool -- Pi_Maxpool [SNN, Alg. 9] over nwin windows of k. */
static int nn_maxpool(snn_nn_ctx *c, uint64_t *max, uint64_t *ind, const uint64_t *x, size_t nwin, size_t k)
{
    if (c->p) return snn_maxpool(c->p, max, ind, x, nwin, k);
    plain_maxpool(max, ind, x, nwin, k);
    return 0;
}

/* The one-hot vector e_ind of each window, as 0/1 integers. */
static void plain_dmaxpool(uint64_t *onehot, const uint64_t *ind, size_t nwin, size_t k)
{
    size_t w;
    assert(k > 0);
    memset(onehot, 0, nwin * k * sizeof *onehot);
    for (w = 0; w < nwin; w++) onehot[w * k + (size_t)(ind[w] % k)] = 1;
}

/* nn_dmaxpool -- Pi_DMaxpool [SNN, Alg. 10]: the one-hot of each index. */
static int nn_dmaxpool(snn_nn_ctx *c, uint64_t *onehot, const uint64_t *ind, size_t nwin, size_t k)
{
    if (c->p) return snn_dmaxpool(c->p, onehot, ind, nwin, k);
    plain_dmaxpool(onehot, ind, nwin, k);
    return 0;
}

/* floor(x / y), saturated at 2^ell - 1 as Pi_Div (SPEC 6.1 item 7);
 * y > 0 by the caller's construction (ASM adds one LSB). */
static void plain_division(uint64_t *q, const uint64_t *x, const uint64_t *y, size_t n, unsigned ell)
{
    size_t i;
    const uint64_t top = ((uint64_t)1 << ell) - 1;
    assert(ell > 0 && ell < 64);
    for (i = 0; i < n; i++) {
        uint64_t v = y[i] ? x[i] / y[i] : top;
        q[i] = v > top ? top : v;
    }
}

/* nn_division -- Pi_Div [SNN, Alg. 8, version (a)]. */
static int nn_division(snn_nn_ctx *c, uint64_t *q, const uint64_t *x, const uint64_t *y, size_t n, unsigned ell)
{
    if (c->p) return snn_division(c->p, q, x, y, n, ell);
    plain_division(q, x, y, n, ell);
    return 0;
}

/* x += v for a public v: only P0 adds it (a public constant is shared as
 * (v, 0)); the twin adds it to the value. */
static void nn_add_public(snn_nn_ctx *c, uint64_t *x, size_t n, uint64_t v)
{
    size_t i;
    if (c->p && c->p->id != 0) return;
    for (i = 0; i < n; i++) x[i] += v;
}

/* ==== 3. Local reshaping: im2col, col2im, windows ======================== */

/*
 * snn_im2col -- the patch matrix of SPEC 2.11.  x: n x h x w x c (NHWC);
 * cols: (n*oh*ow) x (k*k*c), row (b, oy, ox), column (ky, kx, ci); taps
 * outside the image read 0.  Linear, so P0 and P1 apply it to their
 * shares and P2 to its zeros.
 */
void snn_im2col(uint64_t *cols, const uint64_t *x, size_t n, size_t c, size_t h, size_t w,
                size_t k, size_t stride, size_t pad)
{
    size_t oh, ow, b, oy, ox, ky, kx, row = 0, kkc = k * k * c;
    assert(k > 0 && stride > 0 && h + 2 * pad >= k && w + 2 * pad >= k);
    oh = (h + 2 * pad - k) / stride + 1;
    ow = (w + 2 * pad - k) / stride + 1;
    for (b = 0; b < n; b++)
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++, row++) {
                uint64_t *r = cols + row * kkc;
                for (ky = 0; ky < k; ky++) {
                    size_t iy = oy * stride + ky;          /* row in the padded image */
                    for (kx = 0; kx < k; kx++) {
                        size_t ix = ox * stride + kx;
                        uint64_t *dst = r + (ky * k + kx) * c;
                        if (iy < pad || iy - pad >= h || ix < pad || ix - pad >= w)
                            memset(dst, 0, c * sizeof *dst);
                        else
                            memcpy(dst, x + ((b * h + iy - pad) * w + ix - pad) * c, c * sizeof *dst);
                    }
                }
            }
}

/* Maxpool windows made contiguous: win (n*oh*ow*c) x (k*k), window
 * (b, oy, ox, ch) -- the NHWC index of its output -- element (ky, kx). */
static void windows_gather(uint64_t *win, const uint64_t *x, const snn_layer *L, size_t n)
{
    size_t b, oy, ox, ch, ky, kx, k = L->k, kk = k * k, wi = 0;
    assert(L->kind == SNN_LAYER_MAXPOOL && k > 0 && L->oh * k <= L->h && L->ow * k <= L->w);
    for (b = 0; b < n; b++)
        for (oy = 0; oy < L->oh; oy++)
            for (ox = 0; ox < L->ow; ox++)
                for (ch = 0; ch < L->c; ch++, wi++)
                    for (ky = 0; ky < k; ky++)
                        for (kx = 0; kx < k; kx++)
                            win[wi * kk + ky * k + kx] =
                                x[((b * L->h + oy * k + ky) * L->w + ox * k + kx) * L->c + ch];
}

/* The inverse of windows_gather: x gets each window element back in
 * place; inputs outside every window (h or w not a multiple of k) get 0. */
static void windows_scatter(uint64_t *x, const uint64_t *win, const snn_layer *L, size_t n)
{
    size_t b, oy, ox, ch, ky, kx, k = L->k, kk = k * k, wi = 0;
    memset(x, 0, n * snn_layer_in_size(L) * sizeof *x);
    for (b = 0; b < n; b++)
        for (oy = 0; oy < L->oh; oy++)
            for (ox = 0; ox < L->ow; ox++)
                for (ch = 0; ch < L->c; ch++, wi++)
                    for (ky = 0; ky < k; ky++)
                        for (kx = 0; kx < k; kx++)
                            x[((b * L->h + oy * k + ky) * L->w + ox * k + kx) * L->c + ch] =
                                win[wi * kk + ky * k + kx];
}

/*
 * col2im -- the adjoint of snn_im2col: x (n x h x w x c) = the sum, over
 * the patches that read each input, of that patch's entry of cols;
 * entries that read padding are dropped.  Linear, like snn_im2col.
 */
static void col2im(uint64_t *x, const uint64_t *cols, size_t n, size_t c, size_t h, size_t w,
                   size_t k, size_t stride, size_t pad)
{
    size_t oh, ow, b, oy, ox, ky, kx, i, row = 0, kkc = k * k * c;
    assert(k > 0 && stride > 0 && h + 2 * pad >= k && w + 2 * pad >= k);
    oh = (h + 2 * pad - k) / stride + 1;
    ow = (w + 2 * pad - k) / stride + 1;
    memset(x, 0, n * h * w * c * sizeof *x);
    for (b = 0; b < n; b++)
        for (oy = 0; oy < oh; oy++)
            for (ox = 0; ox < ow; ox++, row++) {
                const uint64_t *r = cols + row * kkc;
                for (ky = 0; ky < k; ky++) {
                    size_t iy = oy * stride + ky;          /* row in the padded image */
                    for (kx = 0; kx < k; kx++) {
                        size_t ix = ox * stride + kx;
                        const uint64_t *src = r + (ky * k + kx) * c;
                        uint64_t *dst;
                        if (iy < pad || iy - pad >= h || ix < pad || ix - pad >= w) continue;
                        dst = x + ((b * h + iy - pad) * w + ix - pad) * c;
                        for (i = 0; i < c; i++) dst[i] += src[i];
                    }
                }
            }
}

/* rows x cols matrix: y[r][j] += b[j] (a shared bias: both add their share). */
static void add_rows(uint64_t *y, const uint64_t *b, size_t rows, size_t cols)
{
    size_t r, j;
    for (r = 0; r < rows; r++)
        for (j = 0; j < cols; j++) y[r * cols + j] += b[j];
}

/* g[j] = sum_r d[r][j] */
static void sum_rows(uint64_t *g, const uint64_t *d, size_t rows, size_t cols)
{
    size_t r, j;
    memset(g, 0, cols * sizeof *g);
    for (r = 0; r < rows; r++)
        for (j = 0; j < cols; j++) g[j] += d[r * cols + j];
}

/*
 * SGD on one parameter block (SPEC 2.12): W -= trunc(g, d) with
 * d = f + log2 B + log2(1/lr) for weight gradients (2f fractional bits)
 * and d = log2 B + log2(1/lr) for bias gradients (f bits).  The
 * truncation rounds stochastically (see plain_truncate), so steps below
 * one LSB still move the weight on average.
 */
static int sgd_update(snn_nn_ctx *c, uint64_t *W, uint64_t *g, size_t n, unsigned d)
{
    size_t i;
    if (nn_truncate(c, g, g, n, d) != 0) return -1;
    for (i = 0; i < n; i++) W[i] -= g[i];
    return 0;
}

/* ==== 4. Fully connected layer (SPEC 2.11) =============================== */

/*
 * fc_forward -- y = trunc(x W, f) + b.
 * Shapes: x n x c, W c x oc, b oc, y n x oc.
 * One Pi_MatMul (n, c, oc) and one truncation by f.
 */
static int fc_forward(snn_nn_ctx *c, const snn_layer *L, uint64_t *y, const uint64_t *x,
                      const uint64_t *param, size_t n)
{
    if (nn_matmul(c, y, x, param + L->woff, n, L->c, L->oc, 0, 0) != 0) return -1;
    if (nn_truncate(c, y, y, n * L->oc, F) != 0) return -1;
    add_rows(y, param + L->boff, n, L->oc);
    return 0;
}

/*
 * fc_backward -- dx = trunc(delta W^T, f) (if dx), then
 * W -= trunc(x^T delta, f + shift) and b -= trunc(sum_n delta, shift).
 * Shapes: delta n x oc, dx n x c, x^T delta c x oc.
 * dx uses W before its update (backprop of the step's forward pass).
 */
static int fc_backward(snn_nn_ctx *c, const snn_layer *L, uint64_t *dx, uint64_t *param,
                       const uint64_t *x, const uint64_t *delta, size_t n, unsigned shift)
{
    uint64_t *g = NULL;
    int rc = -1;

    if (!(g = nn_alloc(L->nw))) return nn_nomem(c, "FC backward");
    if (dx) {
        /* (n x oc) * (oc x c): W is stored c x oc, its transpose read as stored */
        SNN_GUARD(nn_matmul(c, dx, delta, param + L->woff, n, L->oc, L->c, 0, 1));
        SNN_GUARD(nn_truncate(c, dx, dx, n * L->c, F));
    }
    SNN_GUARD(nn_matmul(c, g, x, delta, L->c, n, L->oc, 1, 0));
    SNN_GUARD(sgd_update(c, param + L->woff, g, L->nw, F + shift));
    sum_rows(g, delta, n, L->oc);
    SNN_GUARD(sgd_update(c, param + L->boff, g, L->nb, shift));
    rc = 0;
cleanup:
    nn_free(g, L->nw);
    return rc;
}

/* ==== 5. Convolution layer by im2col (SPEC 2.11) ========================= */

/*
 * conv_forward -- y = trunc(im2col(x) W, f) + b.
 * Shapes: x n x h x w x c; im2col(x) (n*oh*ow) x (k*k*c); W (k*k*c) x oc;
 * y (n*oh*ow) x oc = n x oh x ow x oc.  One Pi_MatMul, one truncation.
 */
static int conv_forward(snn_nn_ctx *c, const snn_layer *L, uint64_t *y, const uint64_t *x,
                        const uint64_t *param, size_t n)
{
    size_t rows = n * L->oh * L->ow, kkc = L->k * L->k * L->c;
    uint64_t *cols = NULL;
    int rc = -1;

    if (!(cols = nn_alloc(rows * kkc))) return nn_nomem(c, "Conv forward");
    snn_im2col(cols, x, n, L->c, L->h, L->w, L->k, L->stride, L->pad);
    SNN_GUARD(nn_matmul(c, y, cols, param + L->woff, rows, kkc, L->oc, 0, 0));
    SNN_GUARD(nn_truncate(c, y, y, rows * L->oc, F));
    add_rows(y, param + L->boff, rows, L->oc);
    rc = 0;
cleanup:
    nn_free(cols, rows * kkc);
    return rc;
}

/*
 * conv_backward -- with delta (n*oh*ow) x oc:
 *   dx = trunc(col2im(delta W^T), f): each output position's delta times
 *        the filters gives its patch's share of the input gradient, and
 *        col2im adds the patches up; (n*oh*ow) x oc times oc x (k*k*c),
 *        any stride and padding.  The same sums as SPEC 2.11's full
 *        convolution of the padded delta with the rotated filters, with
 *        k*k fewer elements opened (SPEC 4.5 h);
 *   W -= trunc(im2col(x)^T delta, f + shift), (k*k*c) x oc;
 *   b -= trunc(sum delta, shift).
 */
static int conv_backward(snn_nn_ctx *c, const snn_layer *L, uint64_t *dx, uint64_t *param,
                         const uint64_t *x, const uint64_t *delta, size_t n, unsigned shift)
{
    size_t rows = n * L->oh * L->ow, kkc = L->k * L->k * L->c, ncols = rows * kkc;
    uint64_t *cols = NULL, *g = NULL;
    int rc = -1;

    if (!(cols = nn_alloc(ncols)) || !(g = nn_alloc(L->nw))) {
        rc = nn_nomem(c, "Conv backward");
        goto cleanup;
    }
    if (dx) {
        /* (rows x oc) * (oc x kkc): W is stored kkc x oc, its transpose read as stored */
        SNN_GUARD(nn_matmul(c, cols, delta, param + L->woff, rows, L->oc, kkc, 0, 1));
        col2im(dx, cols, n, L->c, L->h, L->w, L->k, L->stride, L->pad);
        SNN_GUARD(nn_truncate(c, dx, dx, n * L->h * L->w * L->c, F));
    }
    snn_im2col(cols, x, n, L->c, L->h, L->w, L->k, L->stride, L->pad);
    SNN_GUARD(nn_matmul(c, g, cols, delta, kkc, rows, L->oc, 1, 0));
    SNN_GUARD(sgd_update(c, param + L->woff, g, L->nw, F + shift));
    sum_rows(g, delta, rows, L->oc);
    SNN_GUARD(sgd_update(c, param + L->boff, g, L->nb, shift));
    rc = 0;
cleanup:
    nn_free(cols, ncols);
    nn_free(g, L->nw);
    return rc;
}

/* ==== 6. ReLU layer [SNN, Alg. 7] ======================================== */

/* relu_forward -- y = ReLU(x), keeping the DReLU bits (n*size). */
static int relu_forward(snn_nn_ctx *c, const snn_layer *L, uint64_t *y, uint64_t *drelu,
                        const uint64_t *x, size_t n)
{
    return nn_relu(c, y, drelu, x, n * snn_layer_in_size(L));
}

/* relu_backward -- dx = delta * DReLU(x), one element-wise Pi_MatMul with
 * no truncation: the bits are the integers 0/1 (SPEC 1.3 [USE]). */
static int relu_backward(snn_nn_ctx *c, const snn_layer *L, uint64_t *dx, const uint64_t *drelu,
                         const uint64_t *delta, size_t n)
{
    return nn_mul(c, dx, delta, drelu, n * snn_layer_in_size(L));
}

/* ==== 7. Maxpool layer [SNN, Alg. 9, 10] ================================= */

/*
 * maxpool_forward -- k x k windows with stride k: y = the window maxima
 * (n x oh x ow x c), ind (same shape) the argmax within each window.
 */
static int maxpool_forward(snn_nn_ctx *c, const snn_layer *L, uint64_t *y, uint64_t *ind,
                           const uint64_t *x, size_t n)
{
    size_t nwin = n * snn_layer_out_size(L), kk = L->k * L->k;
    uint64_t *win = NULL;
    int rc = -1;

    if (!(win = nn_alloc(nwin * kk))) return nn_nomem(c, "Maxpool forward");
    windows_gather(win, x, L, n);
    SNN_GUARD(nn_maxpool(c, y, ind, win, nwin, kk));
    rc = 0;
cleanup:
    nn_free(win, nwin * kk);
    return rc;
}

/*
 * maxpool_backward -- dx = the window's one-hot (Pi_DMaxpool on ind) times
 * delta upsampled to the window (element-wise Pi_MatMul, no truncation),
 * put back in place (SPEC 2.12).  k*k must divide 2^64 (2x2 here).
 */
static int maxpool_backward(snn_nn_ctx *c, const snn_layer *L, uint64_t *dx, const uint64_t *ind,
                            const uint64_t *delta, size_t n)
{
    size_t nwin = n * snn_layer_out_size(L), kk = L->k * L->k, w, i;
    uint64_t *onehot = NULL, *up = NULL;
    int rc = -1;

    if (!(onehot = nn_alloc(nwin * kk)) || !(up = nn_alloc(nwin * kk))) {
        rc = nn_nomem(c, "Maxpool backward");
        goto cleanup;
    }
    SNN_GUARD(nn_dmaxpool(c, onehot, ind, nwin, kk));
    for (w = 0; w < nwin; w++)
        for (i = 0; i < kk; i++) up[w * kk + i] = delta[w];
    SNN_GUARD(nn_mul(c, up, up, onehot, nwin * kk));
    windows_scatter(dx, up, L, n);
    rc = 0;
cleanup:
    nn_free(onehot, nwin * kk);
    nn_free(up, nwin * kk);
    return rc;
}

/* ==== 8. Layers: dispatch ================================================ */

/* snn_nn_layer_forward -- one layer's forward pass, by kind (secure or
 * twin, as c says; see securenn.h). */
int snn_nn_layer_forward(snn_nn_ctx *c, const snn_layer *L, uint64_t *out, uint64_t *keep,
                         const uint64_t *in, const uint64_t *param, size_t n)
{
    if (ctx_failed(c)) return -1;
    switch (L->kind) {
    case SNN_LAYER_FC:      return fc_forward(c, L, out, in, param, n);
    case SNN_LAYER_CONV:    return conv_forward(c, L, out, in, param, n);
    case SNN_LAYER_RELU:    return relu_forward(c, L, out, keep, in, n);
    case SNN_LAYER_MAXPOOL: return maxpool_forward(c, L, out, keep, in, n);
    default:
        return nn_fail(c, SNN_ERR_ARG, "unknown layer kind %d", L->kind);
    }
}

/* snn_nn_layer_backward -- one layer's backward pass (dprev NULL: none);
 * FC and convolution also take their SGD step. */
int snn_nn_layer_backward(snn_nn_ctx *c, const snn_layer *L, uint64_t *dprev, uint64_t *param,
                          const uint64_t *keep, const uint64_t *in, const uint64_t *delta,
                          size_t n, unsigned shift)
{
    if (ctx_failed(c)) return -1;
    switch (L->kind) {
    case SNN_LAYER_FC:      return fc_backward(c, L, dprev, param, in, delta, n, shift);
    case SNN_LAYER_CONV:    return conv_backward(c, L, dprev, param, in, delta, n, shift);
    case SNN_LAYER_RELU:    return dprev ? relu_backward(c, L, dprev, keep, delta, n) : 0;
    case SNN_LAYER_MAXPOOL: return dprev ? maxpool_backward(c, L, dprev, keep, delta, n) : 0;
    default:
        return nn_fail(c, SNN_ERR_ARG, "unknown layer kind %d", L->kind);
    }
}

/* ==== 9. Networks: state, forward, ASM, predict, train step ============== */

/* snn_nn_state_alloc -- zeroed buffers for batches of up to `batch`
 * samples; 0, or -1 (nothing left allocated) if out of memory. */
int snn_nn_state_alloc(snn_nn_state *s, const snn_net *net, size_t batch)
{
    size_t l;
    memset(s, 0, sizeof *s);
    s->net = net;
    s->batch = batch;
    for (l = 0; l < net->nlayer; l++) {
        const snn_layer *L = &net->layer[l];
        if (!(s->act[l] = nn_alloc(batch * snn_layer_in_size(L)))) goto fail;
        if ((L->kind == SNN_LAYER_RELU || L->kind == SNN_LAYER_MAXPOOL)
            && !(s->keep[l] = nn_alloc(batch * snn_layer_out_size(L))))
            goto fail;
    }
    if (!(s->act[net->nlayer] = nn_alloc(batch * SNN_NN_OUT))) goto fail;
    if (!(s->out = nn_alloc(batch * SNN_NN_OUT))) goto fail;
    return 0;
fail:
    snn_nn_state_free(s);
    return -1;
}

/* snn_nn_state_free -- wipes and frees what snn_nn_state_alloc allocated
 * (activations are shares).  A zeroed state is fine. */
void snn_nn_state_free(snn_nn_state *s)
{
    size_t l, B = s->batch;
    for (l = 0; l <= SNN_NN_MAXLAYER; l++) {
        const snn_layer *L = s->net && l < s->net->nlayer ? &s->net->layer[l] : NULL;
        size_t n = L ? B * snn_layer_in_size(L) : s->net && l == s->net->nlayer ? B * SNN_NN_OUT : 0;
        if (s->act[l]) nn_free(s->act[l], n);
        s->act[l] = NULL;
    }
    for (l = 0; l < SNN_NN_MAXLAYER; l++) {
        if (s->keep[l]) nn_free(s->keep[l], B * snn_layer_out_size(&s->net->layer[l]));
        s->keep[l] = NULL;
    }
    if (s->out) nn_free(s->out, B * SNN_NN_OUT);
    s->out = NULL;
}

/* snn_nn_forward -- the network's forward pass: act[0] = x, act[l+1] =
 * layer l (act[l]); the logits u in act[nlayer]. */
int snn_nn_forward(snn_nn_ctx *c, snn_nn_state *s, const uint64_t *param, const uint64_t *x, size_t n)
{
    const snn_net *net = s->net;
    size_t l;
    if (ctx_failed(c)) return -1;
    if (n > s->batch) return nn_fail(c, SNN_ERR_ARG, "forward: %zu samples, state holds %zu", n, s->batch);
    if (x) memcpy(s->act[0], x, n * SNN_NN_IN * sizeof *x);
    else memset(s->act[0], 0, n * SNN_NN_IN * sizeof *x);      /* P2 holds no input */
    for (l = 0; l < net->nlayer; l++)
        if (snn_nn_layer_forward(c, &net->layer[l], s->act[l + 1], s->keep[l], s->act[l], param, n) != 0)
            return -1;
    return 0;
}

/*
 * snn_nn_asm -- ASM [SNN, App. B], SPEC 2.12, on u (n x 10):
 *   r = ReLU(u)                                  Pi_ReLU
 *   den_i = sum_k r_ik + 1  (one LSB: never 0)   local, P0 adds the 1
 *   q_ik = floor(r_ik 2^f / den_i)               Pi_Div, l_D = f + 1
 * Pi_Div's preconditions (SPEC 2.8): r 2^f < 2^62 and 2^f den < 2^62 hold
 * while |u| < 2^35 (2^22 in real units); q < 2^f < 2^(f+1) since r < den.
 */
int snn_nn_asm(snn_nn_ctx *c, uint64_t *q, const uint64_t *u, size_t n)
{
    size_t m = n * SNN_NN_OUT, i, k;
    uint64_t *r = NULL, *den = NULL;
    int rc = -1;

    if (ctx_failed(c)) return -1;
    if (!(r = nn_alloc(m)) || !(den = nn_alloc(m))) {
        rc = nn_nomem(c, "ASM");
        goto cleanup;
    }
    SNN_GUARD(nn_relu(c, r, NULL, u, m));
    for (i = 0; i < n; i++) {
        uint64_t sum = 0;
        for (k = 0; k < SNN_NN_OUT; k++) sum += r[i * SNN_NN_OUT + k];
        for (k = 0; k < SNN_NN_OUT; k++) den[i * SNN_NN_OUT + k] = sum;
    }
    nn_add_public(c, den, m, 1);
    for (i = 0; i < m; i++) r[i] <<= F;           /* x 2^f: a public factor, share-wise */
    SNN_GUARD(nn_division(c, q, r, den, m, F + 1));
    rc = 0;
cleanup:
    nn_free(r, m);
    nn_free(den, m);
    return rc;
}

/* snn_nn_predict -- argmax of the logits by Pi_Maxpool's index over
 * windows of 10: the classes (shares, or values for the twin). */
int snn_nn_predict(snn_nn_ctx *c, uint64_t *cls, const snn_nn_state *s, size_t n)
{
    uint64_t *mx;
    int rc;
    if (ctx_failed(c)) return -1;
    if (!(mx = nn_alloc(n))) return nn_nomem(c, "predict");
    rc = nn_maxpool(c, mx, cls, s->act[s->net->nlayer], n, SNN_NN_OUT);
    nn_free(mx, n);
    return rc;
}

/* The least k with 2^k >= b. */
static unsigned log2_exact(size_t b)
{
    unsigned k = 0;
    assert(b <= ((size_t)-1 >> 1) + 1);    /* else 1 << k overflows first */
    while (((size_t)1 << k) < b) k++;
    return k;
}

/*
 * snn_nn_train_step -- one SGD step on a batch of B = s->batch samples
 * (SPEC 2.12): forward; q = ASM(u); delta = q - y + trunc(u, 6); then, last
 * layer first, each layer's backward pass (input gradient with the weights
 * of this step's forward pass, then its SGD update with shift log2 B +
 * lr_shift).  The first layer computes no input gradient.
 *
 * The term 2^-6 u (deviation, see the file comment) is the gradient of a
 * logit penalty 2^-7 |u|^2.  Without it the output error q - y is not the
 * gradient of any loss and does not vanish as the logits grow: q is
 * invariant under u -> a u, and for a sample classified right with other
 * positive logits, <q - y, u> = sum_k u_k^2 / sum_k u_k - u_t < 0, so the
 * step grows |u| in proportion to |u|.  B and C then blow up within an
 * epoch or two (|u| from 0.2 to 20 and more, then dead ReLUs and ~10%
 * accuracy, in floating point as in fixed point); with the penalty |u|
 * stays bounded and B and C train to 97-98%.  One local truncation: no
 * messages.
 */
int snn_nn_train_step(snn_nn_ctx *c, snn_nn_state *s, uint64_t *param, const uint64_t *x,
                          const uint64_t *y, unsigned lr_shift)
{
    const snn_net *net = s->net;
    size_t B = s->batch, m = B * SNN_NN_OUT, l, i, ndelta = m, nprev = m;
    unsigned shift = log2_exact(B) + lr_shift;
    uint64_t *delta = NULL, *dprev = NULL;
    int rc = -1;

    if (ctx_failed(c)) return -1;
    if (((size_t)1 << log2_exact(B)) != B)
        return nn_fail(c, SNN_ERR_ARG, "train: batch %zu is not a power of two", B);
    SNN_GUARD(snn_nn_forward(c, s, param, x, B));
    SNN_GUARD(snn_nn_asm(c, s->out, s->act[net->nlayer], B));
    /* delta = ASM(u) - y: the error of the logits (SPEC 2.12), local;
     * then + 2^-6 u, with dprev holding trunc(u, 6) (local) */
    if (!(delta = nn_alloc(ndelta)) || !(dprev = nn_alloc(nprev))) {
        rc = nn_nomem(c, "train");
        goto cleanup;
    }
    for (i = 0; i < m; i++) delta[i] = s->out[i] - (y ? y[i] : 0);
    SNN_GUARD(nn_truncate(c, dprev, s->act[net->nlayer], m, NN_LOGIT_SHIFT));
    for (i = 0; i < m; i++) delta[i] += dprev[i];
    nn_free(dprev, nprev);
    dprev = NULL;
    for (l = net->nlayer; l-- > 0;) {
        const snn_layer *L = &net->layer[l];
        nprev = B * snn_layer_in_size(L);
        if (l > 0 && !(dprev = nn_alloc(nprev))) {
            rc = nn_nomem(c, "train");
            goto cleanup;
        }
        SNN_GUARD(snn_nn_layer_backward(c, L, dprev, param, s->keep[l], s->act[l], delta, B, shift));
        nn_free(delta, ndelta);
        delta = dprev;                 /* NULL after the first layer */
        ndelta = nprev;
        dprev = NULL;
    }
    rc = 0;
cleanup:
    if (delta) nn_free(delta, ndelta);
    if (dprev) nn_free(dprev, nprev);
    return rc;
}

/* ==== 10. The training loops: the twin's and the servers' ================ */

/* Training batches: an epoch is a fresh permutation of the training set
 * (Fisher-Yates from the owner's stream); the last partial batch of an
 * epoch is dropped.  The owner and the twin use the same code, so with the
 * same stream they see the same batches. */
typedef struct {
    size_t *perm;
    size_t  n, pos;
} batcher;

/* The identity order; the first batcher_next shuffles. */
static int batcher_init(batcher *b, size_t n)
{
    size_t i;
    b->n = n;
    b->pos = n;                       /* empty: the first call shuffles */
    if (!(b->perm = malloc((n ? n : 1) * sizeof *b->perm))) return -1;
    for (i = 0; i < n; i++) b->perm[i] = i;
    return 0;
}

/* The order is the owner's: wiped with the rest of its secrets. */
static void batcher_free(batcher *b)
{
    snn_free_wiped(b->perm, (b->n ? b->n : 1) * sizeof *b->perm);
    b->perm = NULL;
}

/* Starts the next batch of B samples: a new epoch (a fresh shuffle) when
 * fewer than B are left in this one. */
static void batcher_turn(batcher *b, snn_prg *g, size_t B)
{
    size_t i;
    if (b->pos + B > b->n) {
        for (i = b->n; i > 1; i--) {
            size_t k = (size_t)snn_prg_below(g, (uint64_t)i), t = b->perm[i - 1];
            b->perm[i - 1] = b->perm[k];
            b->perm[k] = t;
        }
        b->pos = 0;
    }
}

/* Passes over the batches of `steps` training steps as batcher_next would
 * make them (the same draws from g), without making them: a resumed run
 * replays the order of the steps its checkpoint had done. */
static void batcher_skip(batcher *b, snn_prg *g, size_t B, size_t steps)
{
    size_t it;
    for (it = 0; it < steps; it++) {
        batcher_turn(b, g, B);
        b->pos += B;
    }
}

/* The next B samples: x (B x 784) and y (B x 10) in fixed point, lab. */
static void batcher_next(batcher *b, snn_prg *g, const snn_mnist *d, size_t B,
                         uint64_t *x, uint64_t *y, uint8_t *lab)
{
    size_t i;
    batcher_turn(b, g, B);
    for (i = 0; i < B; i++) {
        size_t k = b->perm[b->pos++];
        snn_nn_encode_images(x + i * SNN_NN_IN, d->images + k * SNN_NN_IN, 1);
        lab[i] = d->labels[k];
    }
    snn_nn_encode_labels(y, lab, B);
}

/* Index of the largest of v[0..9] by the rule of Pi_Maxpool (ties: later):
 * the twin's maxpool over one window of 10. */
static size_t argmax10(const uint64_t *v)
{
    uint64_t m, at;
    plain_maxpool(&m, &at, v, 1, SNN_NN_OUT);
    return (size_t)at;
}

/* Adds one batch's ASM outputs q to the running progress figures. */
static void progress_add(snn_progress *pr, const uint64_t *q, const uint8_t *lab, size_t B)
{
    size_t i, k;
    for (i = 0; i < B; i++) {
        for (k = 0; k < SNN_NN_OUT; k++) {
            uint64_t d = abs_signed(q[i * SNN_NN_OUT + k] - (k == lab[i] ? (uint64_t)1 << F : 0));
            pr->sqerr += d * d;
        }
        pr->correct += argmax10(q + i * SNN_NN_OUT) == lab[i];
        pr->seen++;
    }
}

/* Whether iteration it (0-based) of iters ends a progress report. */
static int report_due(size_t it, size_t iters, size_t every)
{
    return every != 0 && ((it + 1) % every == 0 || it + 1 == iters);
}

/* Whether iteration it (0-based) of iters ends with a checkpoint: every
 * `every` steps of the whole run, but not the last (the run's result). */
static int ckpt_due(size_t it, size_t iters, size_t every)
{
    return every != 0 && (it + 1) % every == 0 && it + 1 < iters;
}

/* snn_ckpt_step -- the after-step callback of checkpoints (snn_ckpt):
 * ck->save after every ck->every steps of the run, but not the last. */
int snn_ckpt_step(void *ck, size_t done, size_t iters, const uint64_t *param, const snn_prg *round, char *err,
                  size_t errlen)
{
    const snn_ckpt *k = ck;
    char why[200] = "";
    if (!k->save || !ckpt_due(done - 1, iters, k->every)) return 0;
    if (k->save(k->ctx, done, param, round, why, sizeof why) == 0) return 0;
    snprintf(err, errlen, "the checkpoint after step %zu was not saved: %s", done, why);
    return -1;
}

/*
 * snn_plain_train -- the twin's training loop: it trains on d exactly as
 * the owner batches it (cfg->order), one snn_nn_train_step per batch.
 * Progress (cfg->progress) and anything else after a step, such as a
 * checkpoint (cfg->after_step), hang off the loop.
 */
int snn_plain_train(const snn_net *net, uint64_t *param, const snn_mnist *d, const snn_train_cfg *cfg,
                    char *err, size_t errlen)
{
    const size_t B = cfg->batch, iters = cfg->iters;
    snn_nn_ctx c;
    snn_nn_state s;
    batcher bt;
    uint64_t *x = NULL, *y = NULL;
    uint8_t *lab = NULL;
    snn_progress pr;
    size_t it;
    int rc = -1;

    ctx_twin(&c, cfg->round, err, errlen);
    memset(&s, 0, sizeof s);
    memset(&bt, 0, sizeof bt);
    memset(&pr, 0, sizeof pr);
    if (B == 0 || d->n < B) return nn_fail(&c, SNN_ERR_ARG, "train: batch %zu, %zu training images", B, d->n);
    if (cfg->start && cfg->start >= iters)
        return nn_fail(&c, SNN_ERR_ARG, "train: resume at step %zu of %zu", cfg->start, iters);
    if (snn_nn_state_alloc(&s, net, B) != 0 || batcher_init(&bt, d->n) != 0 || !(x = nn_alloc(B * SNN_NN_IN))
        || !(y = nn_alloc(B * SNN_NN_OUT)) || !(lab = malloc(B))) {
        nn_nomem(&c, "plaintext training");
        goto cleanup;
    }
    pr.iters = iters;
    pr.start = cfg->start;
    batcher_skip(&bt, cfg->order, B, cfg->start);
    for (it = cfg->start; it < iters; it++) {
        batcher_next(&bt, cfg->order, d, B, x, y, lab);
        SNN_GUARD(snn_nn_train_step(&c, &s, param, x, y, snn_lr_shift_at(cfg->lr_shift, cfg->lr_step, it)));
        progress_add(&pr, s.out, lab, B);
        if (report_due(it, iters, cfg->every) && cfg->progress) {
            pr.iter = it + 1;
            cfg->progress(cfg->progress_ctx, &pr);
            pr.seen = pr.correct = 0;
            pr.sqerr = 0;
        }
        if (cfg->after_step) {
            char why[300] = "";
            if (cfg->after_step(cfg->step_ctx, it + 1, iters, param, cfg->round, why, sizeof why) != 0) {
                nn_fail(&c, SNN_ERR_IO, "%s", why);
                goto cleanup;
            }
        }
    }
    rc = 0;
cleanup:
    snn_nn_state_free(&s);
    batcher_free(&bt);
    nn_free(x, B * SNN_NN_IN);
    nn_free(y, B * SNN_NN_OUT);
    snn_free_wiped(lab, B);
    return rc;
}

/*
 * What the owner asked to see after training step it: with progress
 * (job->report), the step's ASM outputs and, at a report, the traffic so
 * far; at a checkpoint, the weights.  In this order: the owner expects it.
 */
static int serve_step_end(snn_party *p, const snn_job *job, size_t it, const snn_nn_state *s,
                          const uint64_t *param, const uint64_t *traffic)
{
    if (job->report) {
        /* progress, to the owner only: this step's ASM outputs */
        if (snn_reveal(p, SNN_CLIENT, NULL, s->out, job->batch * SNN_NN_OUT) != 0) return -1;
        if (report_due(it, job->iters, job->report) && snn_reveal(p, SNN_CLIENT, NULL, traffic, 1) != 0)
            return -1;
    }
    /* a checkpoint: the weights to their owner, mid-run */
    if (ckpt_due(it, job->iters, job->checkpoint))
        return snn_reveal(p, SNN_CLIENT, NULL, param, s->net->nparam);
    return 0;
}

/*
 * serve_train -- the servers' training loop (P0, P1, P2 alike, in a job
 * of the owner, section 14): per step, the batch's shares from the owner
 * (P0 first asks for it), one secure training step, and what the step
 * reveals to the owner (serve_step_end: progress, with the servers'
 * traffic so far, *traffic; a checkpoint); then the trained model, to its
 * owner.  x, y: room for one batch.
 */
static int serve_train(snn_nn_ctx *c, const snn_job *job, snn_nn_state *s, uint64_t *param, uint64_t *x,
                       uint64_t *y, const uint64_t *traffic)
{
    snn_party *p = c->p;
    const size_t B = job->batch;
    size_t it;
    for (it = job->start; it < job->iters; it++) {
        /* Flow control: P0 asks for batch it, so the owner sends one
         * batch per step (the servers never hold more than one ahead)
         * and hears from the servers once a step, however quiet */
        if (p->id == 0) {
            uint64_t want = it;
            if (snn_send_zl(p, SNN_CLIENT, SNN_PROTO_SETUP, 4, &want, 1) != 0) return -1;
        }
        if (snn_share(p, SNN_CLIENT, x, NULL, B * SNN_NN_IN) != 0
            || snn_share(p, SNN_CLIENT, y, NULL, B * SNN_NN_OUT) != 0
            || snn_nn_train_step(c, s, param, x, y, snn_lr_shift_at(job->lr_shift, job->lr_step, it)) != 0
            || serve_step_end(p, job, it, s, param, traffic) != 0)
            return -1;
    }
    return snn_reveal(p, SNN_CLIENT, NULL, param, s->net->nparam);
}

/* snn_plain_infer -- the twin classifies the first n images of d. */
int snn_plain_infer(const snn_net *net, const uint64_t *param, const snn_mnist *d, size_t n,
                    size_t batch, uint64_t *pred, char *err, size_t errlen)
{
    snn_nn_ctx c;
    snn_nn_state s;
    uint64_t *x = NULL;
    size_t done, m;
    int rc = -1;

    ctx_twin(&c, NULL, err, errlen);
    memset(&s, 0, sizeof s);
    if (batch == 0 || n > d->n)
        return nn_fail(&c, SNN_ERR_ARG, "infer: batch %zu, %zu of %zu test images", batch, n, d->n);
    if (snn_nn_state_alloc(&s, net, batch) != 0 || !(x = nn_alloc(batch * SNN_NN_IN))) {
        nn_nomem(&c, "plaintext inference");
        goto cleanup;
    }
    for (done = 0; done < n; done += m) {
        m = n - done < batch ? n - done : batch;
        snn_nn_encode_images(x, d->images + done * SNN_NN_IN, m);
        SNN_GUARD(snn_nn_forward(&c, &s, param, x, m));
        SNN_GUARD(snn_nn_predict(&c, pred + done, &s, m));
    }
    rc = 0;
cleanup:
    snn_nn_state_free(&s);
    nn_free(x, batch * SNN_NN_IN);
    return rc;
}

/* ==== 11. The error bound of secure inference ============================ */

/* a b, saturated at 2^64 - 1. */
static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

/*
 * snn_nn_error_bound -- a bound e (units 2^-f) with |u_secure - u_twin| <= e
 * for every logit, same parameters and inputs.  Derivation: the two runs
 * differ only where the protocol's truncation gives floor(x/2^f) + t with
 * t in {0, 1} (SPEC 1.3; Pi_MatMul, ReLU, Maxpool and the additions are
 * exact).  If a layer's inputs differ by at most e, then for an FC or
 * convolution output with weights w (|w| summed over its inputs: S, the
 * largest such sum of the layer) the products differ by at most S e, so
 *     |floor((X + D) / 2^f) + t - floor(X / 2^f)| <= ceil(S e / 2^f) + 1;
 * ReLU and Maxpool are 1-Lipschitz and keep e.  Starting from e = 0 (the
 * same pixels): e <- ceil(S e / 2^f) + 1 per FC/convolution layer.  It
 * excludes the truncation failure of probability about |x| / 2^64 per
 * element (SPEC 1.3, 4.2 d).
 */
uint64_t snn_nn_error_bound(const snn_net *net, const uint64_t *param)
{
    uint64_t e = 0;
    size_t l, i, j;
    for (l = 0; l < net->nlayer; l++) {
        const snn_layer *L = &net->layer[l];
        size_t rows = L->nw / (L->oc ? L->oc : 1);    /* inputs per output */
        uint64_t S = 0, d;
        if (L->kind != SNN_LAYER_FC && L->kind != SNN_LAYER_CONV) continue;
        for (j = 0; j < L->oc; j++) {
            uint64_t s = 0;
            for (i = 0; i < rows; i++) s += abs_signed(param[L->woff + i * L->oc + j]);
            if (s > S) S = s;
        }
        d = sat_mul(S, e);
        e = (d >> F) + ((d & ((1u << F) - 1)) != 0) + 1;
    }
    return e;
}

/*
 * snn_nn_check_range -- what the weights allow, from the weights alone:
 * bounds (units 2^-f) on every value the network computes, checked against
 * the ranges the protocols need, and a bound on the expected number of
 * local truncations that fail.
 *
 * Forward, from |x| <= 7/2 (snn_nn_encode_images): an FC or convolution
 * layer with largest column sum of |w| S and largest |bias| b maps an
 * input bound X to products P = S X (2f fractional bits, truncated once)
 * and outputs (P >> f) + 1 + b; ReLU and Maxpool keep X.  Limits: every
 * P below 2^62 (the ring and the truncation, SPEC 1.3); ReLU inputs below
 * 2^62 (DReLU's domain, SPEC 2.6, 4.2 c); Maxpool inputs and the logits
 * (argmax by Pi_Maxpool) below 2^61, so that differences stay below 2^62;
 * when training, logits below 2^44, so that ASM's denominator
 * 10 |u| + 1 stays below 2^48 and 2^(f+1) times it below 2^62 (Pi_Div's
 * precondition, SPEC 2.8).
 *
 * Truncation fails with probability about |v| / 2^64 per value v
 * (SPEC 1.3), so the expected number of failures is at most the sum of
 * the bounds over every truncated value, / 2^64: per image of inference
 * the forward products; per training step (batch B) also the logit
 * penalty, the input gradients (bound R D, R the largest sum of |w| over
 * one input, D the bound of the output gradient, |ASM - y| <= 1 plus the
 * logit penalty at the last layer) and the weight and bias gradients
 * (B X D and B D).
 *
 * Returns 0 if every bound is within its limit, else -1 with the first
 * layer that leaves it named in r->why.
 */
static uint64_t sat_add(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }

/* |w| sums of an FC or convolution layer: S the largest over one output,
 * R the largest over one input channel (all its rows), bmax the largest
 * |bias|.  Convolution rows are (ky, kx, ci), so row i is channel i % c. */
static void layer_sums(const snn_layer *L, const uint64_t *param, uint64_t *S, uint64_t *R, uint64_t *bmax)
{
    size_t rows = L->nw / L->oc, i, j, ci;
    *S = *R = *bmax = 0;
    for (j = 0; j < L->oc; j++) {
        uint64_t s = 0;
        for (i = 0; i < rows; i++) s = sat_add(s, abs_signed(param[L->woff + i * L->oc + j]));
        if (s > *S) *S = s;
        if (abs_signed(param[L->boff + j]) > *bmax) *bmax = abs_signed(param[L->boff + j]);
    }
    for (ci = 0; ci < L->c; ci++) {
        uint64_t s = 0;
        for (i = ci; i < rows; i += L->c)
            for (j = 0; j < L->oc; j++) s = sat_add(s, abs_signed(param[L->woff + i * L->oc + j]));
        if (s > *R) *R = s;
    }
}

static double log2_u64(uint64_t x) { return x ? log2((double)x) : 0; }

/* "layer 4 (FC 128 -> 10)": a layer of net for messages. */
void snn_nn_layer_name(char *buf, size_t n, const snn_net *net, int l)
{
    const snn_layer *L;
    if (l < 0 || (size_t)l >= net->nlayer) { snprintf(buf, n, "layer ?"); return; }
    L = &net->layer[l];
    if (L->kind == SNN_LAYER_FC) snprintf(buf, n, "layer %d (FC %zu -> %zu)", l, L->c, L->oc);
    else if (L->kind == SNN_LAYER_CONV)
        snprintf(buf, n, "layer %d (convolution %zux%zu, %zu -> %zu channels)", l, L->k, L->k, L->c, L->oc);
    else if (L->kind == SNN_LAYER_RELU) snprintf(buf, n, "layer %d (ReLU)", l);
    else snprintf(buf, n, "layer %d (Maxpool %zux%zu)", l, L->k, L->k);
}

int snn_nn_check_range(const snn_net *net, const uint64_t *param, size_t batch, int train, snn_nn_range *r)
{
    uint64_t X = (uint64_t)7 << (F - 1), in_bound[SNN_NN_MAXLAYER + 1], D, S, R, bm, P;
    const double two64 = 18446744073709551616.0, B = (double)batch;
    size_t l;

    memset(r, 0, sizeof *r);
    r->layer = -1;
    for (l = 0; l < net->nlayer; l++) {
        const snn_layer *L = &net->layer[l];
        const double nout = (double)snn_layer_out_size(L);
        in_bound[l] = X;
        if (L->kind == SNN_LAYER_RELU && X >= (uint64_t)1 << 62 && r->layer < 0) {
            r->layer = (int)l;
            snprintf(r->why, sizeof r->why, "inputs up to 2^%.1f, beyond DReLU's domain |x| < 2^62 (SPEC 2.6)",
                     log2_u64(X));
        }
        if (L->kind == SNN_LAYER_MAXPOOL && X >= (uint64_t)1 << 61 && r->layer < 0) {
            r->layer = (int)l;
            snprintf(r->why, sizeof r->why, "inputs up to 2^%.1f, beyond Maxpool's |x| < 2^61 (SPEC 2.9)",
                     log2_u64(X));
        }
        if (L->kind != SNN_LAYER_FC && L->kind != SNN_LAYER_CONV) continue;
        layer_sums(L, param, &S, &R, &bm);
        P = sat_mul(S, X);
        if (P >= (uint64_t)1 << 62 && r->layer < 0) {
            r->layer = (int)l;
            snprintf(r->why, sizeof r->why, "products up to 2^%.1f before truncation, beyond 2^62 (SPEC 1.3)",
                     log2_u64(P));
        }
        r->fail_infer += nout * (double)P / two64;
        X = sat_add(sat_add(P >> F, 1), bm);
    }
    in_bound[net->nlayer] = X;
    r->logit_log2 = log2_u64(X);
    if (X >= (uint64_t)1 << 61 && r->layer < 0) {
        r->layer = (int)net->nlayer - 1;
        snprintf(r->why, sizeof r->why, "logits up to 2^%.1f, beyond the argmax's |u| < 2^61 (SPEC 2.9)", log2_u64(X));
    }
    if (train && X >= (uint64_t)1 << 44 && r->layer < 0) {
        r->layer = (int)net->nlayer - 1;
        snprintf(r->why, sizeof r->why, "logits up to 2^%.1f, beyond ASM's |u| < 2^44 (Pi_Div, SPEC 2.8)",
                 log2_u64(X));
    }
    /* Training: the forward pass on the batch, the logit penalty, then the
     * gradients, last layer first */
    r->fail_step = B * r->fail_infer + B * SNN_NN_OUT * (double)X / two64;
    D = sat_add(sat_add((uint64_t)1 << F, X >> NN_LOGIT_SHIFT), 1);
    for (l = net->nlayer; l-- > 0;) {
        const snn_layer *L = &net->layer[l];
        if (L->kind != SNN_LAYER_FC && L->kind != SNN_LAYER_CONV) continue;
        layer_sums(L, param, &S, &R, &bm);
        r->fail_step += (double)L->nw * B * (double)sat_mul(in_bound[l], D) / two64
                        + (double)L->nb * B * (double)D / two64;
        if (l > 0) {
            P = sat_mul(R, D);
            r->fail_step += B * (double)snn_layer_in_size(L) * (double)P / two64;
            D = sat_add(P >> F, 1);
        }
    }
    return r->layer < 0 ? 0 : -1;
}

/* ==== 12. Owner-side encodings and initial weights ======================= */

/*
 * The owner standardises pixels, x = 4 p/255 - 1/2 = 4 (p/255 - 1/8): about
 * (p/255 - mean) / std for MNIST (mean 0.1307, std 0.3081, so 1/std = 3.25),
 * with a mean and a scale whose fixed-point values are exact, so that
 * x 2^f = round(p 2^(f+2) / 255) - 2^(f-1) has one rounding, to nearest.
 * Inputs centred near 0 with unit spread train network A far faster than
 * p/255 (a float experiment: 82.5% -> 87.8% after 3 epochs).  x lies in
 * [-1/2, 7/2]; a negative x is its two's complement in Z_L.
 */
#define PIX_SCALE_LOG 2                     /* scale 4 */
#define PIX_MEAN_FIX  ((uint64_t)1 << (F - 1)) /* 4 * mean = 4/8 = 1/2, in fixed point */

void snn_nn_encode_images(uint64_t *x, const uint8_t *pixels, size_t n)
{
    size_t i;
    for (i = 0; i < n * SNN_NN_IN; i++) {
        const uint64_t num = (uint64_t)pixels[i] << (F + PIX_SCALE_LOG);
        x[i] = num / 255 + ((num % 255) * 2 >= 255) - PIX_MEAN_FIX;
    }
}

/* One-hot labels: 1.0 = 2^f at the label, 0 elsewhere. */
void snn_nn_encode_labels(uint64_t *y, const uint8_t *labels, size_t n)
{
    size_t i;
    memset(y, 0, n * SNN_NN_OUT * sizeof *y);
    for (i = 0; i < n; i++) y[i * SNN_NN_OUT + labels[i] % SNN_NN_OUT] = (uint64_t)1 << F;
}

/* floor(sqrt(v)) by Newton's method on integers. */
static uint64_t isqrt64(uint64_t v)
{
    uint64_t x = v, y;
    if (v < 2) return v;
    y = x / 2 + 1;
    while (y < x) { x = y; y = (x + v / x) / 2; }
    return x;
}

/*
 * snn_nn_init_params -- Glorot uniform: each weight uniform in [-a, a] with
 * a = sqrt(6 / (fan_in + fan_out)), i.e. a 2^f = sqrt(6 2^2f / (fan_in +
 * fan_out)), by integer square root; biases 0.  Convolutions count
 * fan_in = k k c and fan_out = k k oc.  Drawn in layer order from g.
 */
void snn_nn_init_params(const snn_net *net, uint64_t *param, snn_prg *g)
{
    size_t l, i;
    memset(param, 0, net->nparam * sizeof *param);
    for (l = 0; l < net->nlayer; l++) {
        const snn_layer *L = &net->layer[l];
        uint64_t fan, a;
        if (L->kind != SNN_LAYER_FC && L->kind != SNN_LAYER_CONV) continue;
        fan = (uint64_t)(L->k * L->k * (L->c + L->oc));
        a = isqrt64(((uint64_t)6 << (2 * F)) / fan);
        for (i = 0; i < L->nw; i++)
            param[L->woff + i] = snn_prg_below(g, 2 * a + 1) - a;
    }
}

/* ==== 13. Model files ==================================================== */
/*
 * Format, all little-endian:
 *   off      size  field
 *     0         4  magic "SNNM"
 *     4         4  version, 1
 *     8         4  network id: 0 = A, 1 = B, 2 = C, 3 = D
 *    12         4  fractional bits f (13)
 *    16         8  parameter count n (must be the network's)
 *    24       8 n  parameters, int64 two's complement (= the Z_L element),
 *                  in snn_net order: per layer its weights, then biases
 *  24+8n        8  FNV-1a 64 of bytes 0 .. 24+8n-1
 * The file must be exactly 32 + 8n bytes.
 */

#define MODEL_VERSION 1u
#define MODEL_HDR 24u

/* FNV-1a, 64 bits: the model file's checksum (integrity, not security). */
static uint64_t fnv1a64(const unsigned char *b, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    size_t i;
    for (i = 0; i < n; i++) { h ^= b[i]; h *= 0x100000001b3u; }
    return h;
}

/*
 * fopen_private -- fopen(path, mode) for "w", "wb" or "a", but the file is
 * created with mode 0600 and an existing regular file is set to 0600, so
 * that whatever the umask only its user can read it: models, checkpoints,
 * predictions and transcripts hold the owner's data or shares of it
 * (README "Files and what they reveal").  NULL with errno set.
 */
static FILE *fopen_private(const char *path, const char *mode)
{
    struct stat st;
    FILE *f;
    const int fd = open(path, O_WRONLY | O_CREAT | (mode[0] == 'a' ? O_APPEND : O_TRUNC), 0600);
    if (fd < 0) return NULL;
    if (fstat(fd, &st) != 0 || (S_ISREG(st.st_mode) && (st.st_mode & 0777) != 0600 && fchmod(fd, 0600) != 0)
        || !(f = fdopen(fd, mode))) {
        const int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    return f;
}

/* Writes the len bytes of buf to path (created, or truncated); with
 * durable set, on the disk before it is closed (fsync).  *created is set
 * once the file exists, for the caller to remove on a later failure.
 * 0, or -1 with a one-line message. */
static int write_owner_bytes(const char *path, const unsigned char *buf, size_t len, int durable, int *created,
                             char *err, size_t errlen)
{
    FILE *f = fopen_private(path, "wb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    *created = 1;
    if (fwrite(buf, 1, len, f) != len || fflush(f) != 0 || (durable && fsync(fileno(f)) != 0)) {
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        fclose(f);
        return -1;
    }
    if (fclose(f) != 0) {
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* snn_model_save -- writes the format above; 0, or -1 and a message. */
int snn_model_save(const char *path, int net, const uint64_t *param, size_t n, char *err, size_t errlen)
{
    unsigned char *buf = NULL;
    size_t len = MODEL_HDR + 8 * n + 8, i;
    int rc = -1, created = 0;

    if (!(buf = malloc(len))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto cleanup;
    }
    memcpy(buf, "SNNM", 4);
    snn_store32_le(buf + 4, MODEL_VERSION);
    snn_store32_le(buf + 8, (uint32_t)net);
    snn_store32_le(buf + 12, F);
    snn_store64_le(buf + 16, (uint64_t)n);
    for (i = 0; i < n; i++) snn_store64_le(buf + MODEL_HDR + 8 * i, param[i]);
    snn_store64_le(buf + len - 8, fnv1a64(buf, len - 8));
    if (write_owner_bytes(path, buf, len, 0, &created, err, errlen) != 0) goto cleanup;
    rc = 0;
cleanup:
    snn_free_wiped(buf, len);           /* the owner's model */
    return rc;
}

/*
 * snn_model_writable -- whether a model can later be saved at path: an
 * existing file is opened for update (its contents untouched), an absent
 * one created and removed again.  So a job that saves its model at the end
 * can refuse a bad path before it starts.
 */
int snn_model_writable(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r+b");
    if (f) { fclose(f); return 0; }
    if (errno == ENOENT && (f = fopen_private(path, "wb")) != NULL) {
        fclose(f);
        remove(path);
        return 0;
    }
    snprintf(err, errlen, "%s cannot be written: %s", path, strerror(errno));
    return -1;
}

/*
 * Reads all of the file at path (what: "model" or "checkpoint", for the
 * messages), up to the largest of this program's plus one byte, into *buf
 * (capacity *cap, to free with snn_free_wiped: the owner's weights) and
 * *len.  0, or -1 with a one-line message (and *buf possibly set).
 */
static int read_owner_file(const char *path, const char *what, unsigned char **buf, size_t *len, size_t *cap,
                           char *err, size_t errlen)
{
    FILE *f = NULL;
    struct stat st;
    int rc = -1;
    *buf = NULL;
    *len = 0;
    *cap = 1 << 16;
    /* a pipe would block the open itself: look before opening, and again
     * at what was opened */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file, so not a %s", path, what);
        return -1;
    }
    if (!(f = fopen(path, "rb"))) {
        snprintf(err, errlen, "%s: cannot open %s: %s", path, what, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {     /* a directory, a pipe, a device */
        snprintf(err, errlen, "%s: not a regular file, so not a %s", path, what);
        fclose(f);
        return -1;
    }
    for (;;) {
        size_t got;
        if (*len == *cap) {
            unsigned char *nb;
            if (*cap > ((size_t)64 << 20)) {
                snprintf(err, errlen, "%s: larger than any %s of this program", path, what);
                goto cleanup;
            }
            /* grown by hand, not realloc: the old copy is wiped */
            if (!(nb = malloc(*cap * 2))) { snprintf(err, errlen, "%s: out of memory", path); goto cleanup; }
            memcpy(nb, *buf, *len);
            snn_free_wiped(*buf, *cap);
            *buf = nb;
            *cap *= 2;
        }
        if (!*buf && !(*buf = malloc(*cap))) { snprintf(err, errlen, "%s: out of memory", path); goto cleanup; }
        got = fread(*buf + *len, 1, *cap - *len, f);
        *len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    fclose(f);
    return rc;
}

/*
 * snn_model_load -- reads and checks a model file: magic, version,
 * network (and want_net unless -1), f, count, exact size, checksum.
 * 0 with m->param allocated (snn_model_free), or -1 and a one-line message.
 */
int snn_model_load(snn_model *m, const char *path, int want_net, char *err, size_t errlen)
{
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0, i, want_len;
    uint64_t ver, id, fb, n;
    snn_net net;
    int rc = -1;

    memset(m, 0, sizeof *m);
    m->net = -1;
    if (read_owner_file(path, "model", &buf, &len, &cap, err, errlen) != 0) goto cleanup;
    if (len < 4 || memcmp(buf, "SNNM", 4) != 0) {
        snprintf(err, errlen, "%s: not a SecureNN model (bad magic)", path);
        goto cleanup;
    }
    if (len < MODEL_HDR) {
        snprintf(err, errlen, "%s: truncated model: %zu bytes, the header alone is %u", path, len, MODEL_HDR);
        goto cleanup;
    }
    ver = snn_load32_le(buf + 4);
    id = snn_load32_le(buf + 8);
    fb = snn_load32_le(buf + 12);
    n = snn_load64_le(buf + 16);
    if (ver != MODEL_VERSION) {
        snprintf(err, errlen, "%s: model format version %llu, this program reads version %u",
                 path, (unsigned long long)ver, MODEL_VERSION);
        goto cleanup;
    }
    if (id >= SNN_NET_COUNT) {
        snprintf(err, errlen, "%s: unknown network id %llu", path, (unsigned long long)id);
        goto cleanup;
    }
    if (want_net >= 0 && (uint64_t)want_net != id) {
        snprintf(err, errlen, "%s: model is for network %s, not %s", path, snn_net_name((int)id),
                 snn_net_name(want_net));
        goto cleanup;
    }
    if (fb != F) {
        snprintf(err, errlen, "%s: model has %llu fractional bits, this build uses %d",
                 path, (unsigned long long)fb, F);
        goto cleanup;
    }
    snn_net_init(&net, (int)id);
    if (n != net.nparam) {
        snprintf(err, errlen, "%s: %llu parameters, network %s has %zu", path,
                 (unsigned long long)n, snn_net_name((int)id), net.nparam);
        goto cleanup;
    }
    want_len = MODEL_HDR + 8 * net.nparam + 8;
    if (len != want_len) {
        snprintf(err, errlen, "%s: %s model: %zu bytes, a network %s model is %zu bytes", path,
                 len < want_len ? "truncated" : "oversized", len, snn_net_name((int)id), want_len);
        goto cleanup;
    }
    if (snn_load64_le(buf + len - 8) != fnv1a64(buf, len - 8)) {
        snprintf(err, errlen, "%s: checksum mismatch, the model is corrupt", path);
        goto cleanup;
    }
    if (!(m->param = nn_alloc(net.nparam))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto cleanup;
    }
    for (i = 0; i < net.nparam; i++) m->param[i] = snn_load64_le(buf + MODEL_HDR + 8 * i);
    m->net = (int)id;
    m->n = net.nparam;
    rc = 0;
cleanup:
    if (buf) snn_free_wiped(buf, cap);  /* the owner's model */
    return rc;
}

/* snn_model_free -- wipes and frees what snn_model_load allocated. */
void snn_model_free(snn_model *m)
{
    if (m->param) nn_free(m->param, m->n);
    m->param = NULL;
    m->n = 0;
}

/*
 * Checkpoint files, all little-endian:
 *   off      size  field
 *     0         4  magic "SNNK"
 *     4         4  version, 2 (version 1 is read too: no field at 88)
 *     8         4  network id 0..2 (A..C; D is not trained securely)
 *    12         4  fractional bits f (13)
 *    16         4  1: saved by a secure run, 0: by the twin
 *    20         4  batch
 *    24         4  learning-rate shift
 *    28         4  learning-rate step (0: constant)
 *    32         4  training steps of the whole run
 *    36         4  steps done, 1 .. steps - 1
 *    40         8  the owner's seed (initial weights, batch order)
 *    48         8  twin: bytes drawn from its rounding stream (0: secure)
 *    56         8  training images
 *    64         8  snn_labels_hash of the training labels
 *    72         8  parameter count n (the network's)
 *    80         8  the checkpoint period of the run that saved it
 *    88         8  its progress period (--every; 0: none)
 *    96       8 n  parameters, as in a model file
 *  96+8n        8  FNV-1a 64 of bytes 0 .. 96+8n-1
 */

#define CKPT_VERSION 2u
#define CKPT_HDR 96u
#define CKPT_HDR_V1 88u

/* snn_labels_hash -- see securenn.h. */
uint64_t snn_labels_hash(const snn_mnist *d)
{
    return fnv1a64(d->labels, d->n);
}

/* Flushes the directory that holds path to the disk (a rename is an entry
 * of it), where the system lets a directory be opened and synced. */
static void sync_dir_of(const char *path)
{
    char dir[1024];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    int fd;
    if (!slash) { dir[0] = '.'; n = 1; }
    else if (n == 0) { dir[0] = '/'; n = 1; }
    else if (n >= sizeof dir) return;
    else memcpy(dir, path, n);
    dir[n] = '\0';
    if ((fd = open(dir, O_RDONLY)) >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* snn_ckpt_save -- the format above, to path.tmp, then renamed to path. */
int snn_ckpt_save(const char *path, const snn_ckpt_file *c, const uint64_t *param, char *err, size_t errlen)
{
    unsigned char *buf = NULL;
    size_t len = CKPT_HDR + 8 * c->n + 8, i, plen = strlen(path);
    char *tmp = NULL;
    int rc = -1, created = 0;

    if (!(buf = malloc(len)) || !(tmp = malloc(plen + 5))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto cleanup;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    memset(buf, 0, CKPT_HDR);
    memcpy(buf, "SNNK", 4);
    snn_store32_le(buf + 4, CKPT_VERSION);
    snn_store32_le(buf + 8, (uint32_t)c->net);
    snn_store32_le(buf + 12, F);
    snn_store32_le(buf + 16, (uint32_t)(c->secure != 0));
    snn_store32_le(buf + 20, (uint32_t)c->batch);
    snn_store32_le(buf + 24, c->lr_shift);
    snn_store32_le(buf + 28, (uint32_t)c->lr_step);
    snn_store32_le(buf + 32, (uint32_t)c->iters);
    snn_store32_le(buf + 36, (uint32_t)c->done);
    snn_store64_le(buf + 40, c->seed);
    snn_store64_le(buf + 48, c->round_pos);
    snn_store64_le(buf + 56, c->data_n);
    snn_store64_le(buf + 64, c->data_hash);
    snn_store64_le(buf + 72, (uint64_t)c->n);
    snn_store64_le(buf + 80, (uint64_t)c->every);
    snn_store64_le(buf + 88, (uint64_t)c->report);
    for (i = 0; i < c->n; i++) snn_store64_le(buf + CKPT_HDR + 8 * i, param[i]);
    snn_store64_le(buf + len - 8, fnv1a64(buf, len - 8));
    /* on the disk before the rename, so that the name never points at a
     * file a power cut could leave half written */
    if (write_owner_bytes(tmp, buf, len, 1, &created, err, errlen) != 0) goto cleanup;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
        goto cleanup;
    }
    created = 0;
    sync_dir_of(path);                  /* the rename itself, where the system allows */
    rc = 0;
cleanup:
    if (created) remove(tmp);           /* only the file made here */
    free(tmp);
    if (buf) snn_free_wiped(buf, len);  /* the owner's weights and seed */
    return rc;
}

/* snn_ckpt_load -- reads the format above and checks every field. */
int snn_ckpt_load(snn_ckpt_file *c, const char *path, char *err, size_t errlen)
{
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0, i, want_len, hdr = CKPT_HDR;
    uint64_t v;
    snn_net net;
    int rc = -1;

    memset(c, 0, sizeof *c);
    c->net = -1;
    if (read_owner_file(path, "checkpoint", &buf, &len, &cap, err, errlen) != 0) goto cleanup;
    if (len < 4 || memcmp(buf, "SNNK", 4) != 0) {
        snprintf(err, errlen, "%s: not a SecureNN checkpoint (bad magic%s)", path,
                 len >= 4 && memcmp(buf, "SNNM", 4) == 0 ? ": a model file; --model takes it" : "");
        goto cleanup;
    }
    if (len >= 8 && snn_load32_le(buf + 4) == 1) hdr = CKPT_HDR_V1;
    if (len < hdr) {
        snprintf(err, errlen, "%s: truncated checkpoint: %zu bytes, the header alone is %zu", path, len, hdr);
        goto cleanup;
    }
    if ((v = snn_load32_le(buf + 4)) != CKPT_VERSION && v != 1) {
        snprintf(err, errlen, "%s: checkpoint format version %llu, this program reads versions 1 and %u", path,
                 (unsigned long long)v, CKPT_VERSION);
        goto cleanup;
    }
    if ((v = snn_load32_le(buf + 8)) > SNN_NET_C) {
        snprintf(err, errlen, "%s: network id %llu: not a network that trains (A, B, C)", path,
                 (unsigned long long)v);
        goto cleanup;
    }
    c->net = (int)v;
    if ((v = snn_load32_le(buf + 12)) != F) {
        snprintf(err, errlen, "%s: %llu fractional bits, this build uses %d", path, (unsigned long long)v, F);
        goto cleanup;
    }
    snn_net_init(&net, c->net);
    want_len = hdr + 8 * net.nparam + 8;
    if (len != want_len) {
        snprintf(err, errlen, "%s: %s checkpoint: %zu bytes, a network %s checkpoint is %zu bytes", path,
                 len < want_len ? "truncated" : "oversized", len, snn_net_name(c->net), want_len);
        goto cleanup;
    }
    if (snn_load64_le(buf + len - 8) != fnv1a64(buf, len - 8)) {
        snprintf(err, errlen, "%s: checksum mismatch, the checkpoint is corrupt", path);
        goto cleanup;
    }
    if ((v = snn_load32_le(buf + 16)) > 1) {
        snprintf(err, errlen, "%s: the secure-run field is %llu, not 0 or 1", path, (unsigned long long)v);
        goto cleanup;
    }
    c->secure = (int)v;
    c->batch = snn_load32_le(buf + 20);
    c->lr_shift = snn_load32_le(buf + 24);
    c->lr_step = snn_load32_le(buf + 28);
    c->iters = snn_load32_le(buf + 32);
    c->done = snn_load32_le(buf + 36);
    c->seed = snn_load64_le(buf + 40);
    c->round_pos = snn_load64_le(buf + 48);
    c->data_n = snn_load64_le(buf + 56);
    c->data_hash = snn_load64_le(buf + 64);
    c->every = (size_t)snn_load64_le(buf + 80);
    c->report = hdr > CKPT_HDR_V1 ? (size_t)snn_load64_le(buf + 88) : 0;
    /* a checksum guards against accidents only: every field is checked */
    if (c->secure > 1 || c->batch < 1 || c->batch > NN_MAX_BATCH || (c->batch & (c->batch - 1)) != 0
        || c->lr_shift > NN_MAX_LR_SHIFT || c->iters > NN_MAX_ITERS || c->done < 1 || c->done >= c->iters
        || snn_lr_shift_at(c->lr_shift, c->lr_step, c->iters - 1) > NN_MAX_LR_SHIFT
        || snn_load64_le(buf + 72) != net.nparam || c->data_n < c->batch || snn_load64_le(buf + 80) < 1
        || snn_load64_le(buf + 80) >= c->iters || (hdr > CKPT_HDR_V1 && snn_load64_le(buf + 88) > c->iters)) {
        snprintf(err, errlen, "%s: a field is out of range (batch %zu, shift %u, step %zu, %zu of %zu steps, "
                 "%llu images)", path, c->batch, c->lr_shift, c->lr_step, c->done, c->iters,
                 (unsigned long long)c->data_n);
        goto cleanup;
    }
    if (!(c->param = nn_alloc(net.nparam))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto cleanup;
    }
    for (i = 0; i < net.nparam; i++) c->param[i] = snn_load64_le(buf + hdr + 8 * i);
    c->n = net.nparam;
    rc = 0;
cleanup:
    if (buf) snn_free_wiped(buf, cap);  /* the owner's weights and seed */
    if (rc != 0) snn_wipe(c, sizeof *c);
    return rc;
}

/* snn_ckpt_free -- wipes and frees what snn_ckpt_load allocated, and the
 * owner's seed. */
void snn_ckpt_free(snn_ckpt_file *c)
{
    if (c->param) nn_free(c->param, c->n);
    snn_wipe(c, sizeof *c);
}

/* ---- Models in from NumPy: one .npy file per weight and bias ----------- */
/*
 * The .npy reader itself (snn_npy_load) is one of the owner's files, in
 * mnist.c beside the IDX reader; here its arrays become a network's
 * parameters.
 */

/* "(128, 784)" */
static void shape_text(char *buf, size_t n, const size_t *shape, size_t ndim)
{
    size_t i, len = (size_t)snprintf(buf, n, "(");
    for (i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%zu", i ? ", " : "", shape[i]);
    if (len < n) snprintf(buf + len, n - len, ndim == 1 ? ",)" : ")");
}

/* Fixed point of a float parameter: finite and |v| < 2^40 (far beyond any
 * weight, and the products of SPEC 1.3 stay in the ring). */
static int import_value(uint64_t *y, double v, const char *path, size_t i, char *err, size_t errlen)
{
    if (!(v == v) || v > 1099511627776.0 || v < -1099511627776.0) {
        snprintf(err, errlen, "%s: element %zu is %g, not a finite value of magnitude at most 2^40", path, i, v);
        return -1;
    }
    *y = snn_encode(v);
    return 0;
}

/* snn_model_import -- see securenn.h. */
int snn_model_import(const char *dir, int id, uint64_t *param, char *err, size_t errlen)
{
    snn_net net;
    size_t l, nth = 0;
    char path[4096], want[64], got[64];
    double *x = NULL;
    int rc = -1;

    if (snn_net_init(&net, id) != 0) { snprintf(err, errlen, "unknown network id %d", id); return -1; }
    for (l = 0; l < net.nlayer; l++) {
        const snn_layer *L = &net.layer[l];
        size_t shape[4], ndim, wshape[4], wn, i, o, ci, ky, kx;
        /* the input of an FC layer as a feature map: PyTorch flattens it
         * channel first (c, y, x), this program channel last (y, x, c) */
        size_t C = 1, H = 1, W = 1;
        if (L->kind != SNN_LAYER_FC && L->kind != SNN_LAYER_CONV) continue;
        nth++;
        /* weights: FC (out, in), convolution (out, in, k, k), as PyTorch */
        wshape[0] = L->oc;
        if (L->kind == SNN_LAYER_FC) {
            wshape[1] = L->c;
            wn = 2;
            if (l > 0) { C = net.layer[l - 1].oc; H = net.layer[l - 1].oh; W = net.layer[l - 1].ow; }
            else { C = 1; H = 1; W = L->c; }
        } else {
            wshape[1] = L->c; wshape[2] = L->k; wshape[3] = L->k;
            wn = 4;
        }
        snprintf(path, sizeof path, "%s/layer%zu.weight.npy", dir, nth);
        if (snn_npy_load(path, &x, shape, &ndim, err, errlen) != 0) goto cleanup;
        shape_text(want, sizeof want, wshape, wn);
        shape_text(got, sizeof got, shape, ndim);
        if (ndim != wn || memcmp(shape, wshape, wn * sizeof *shape) != 0) {
            snprintf(err, errlen, "%s: layer %zu (%s) of network %s needs weights of shape %s, not %s", path,
                     nth, L->kind == SNN_LAYER_FC ? "fully connected" : "convolution", snn_net_name(id), want, got);
            goto cleanup;
        }
        for (o = 0; o < L->oc; o++) {
            if (L->kind == SNN_LAYER_FC) {
                size_t y, xx, c;
                for (y = 0; y < H; y++)
                    for (xx = 0; xx < W; xx++)
                        for (c = 0; c < C; c++) {
                            size_t ours = (y * W + xx) * C + c, theirs = (c * H + y) * W + xx;
                            if (import_value(&param[L->woff + ours * L->oc + o], x[o * L->c + theirs], path,
                                             o * L->c + theirs, err, errlen) != 0) goto cleanup;
                        }
            } else {
                for (ci = 0; ci < L->c; ci++)
                    for (ky = 0; ky < L->k; ky++)
                        for (kx = 0; kx < L->k; kx++) {
                            size_t theirs = ((o * L->c + ci) * L->k + ky) * L->k + kx;
                            size_t row = (ky * L->k + kx) * L->c + ci;
                            if (import_value(&param[L->woff + row * L->oc + o], x[theirs], path, theirs, err,
                                             errlen) != 0) goto cleanup;
                        }
            }
        }
        free(x);
        x = NULL;
        /* biases: (out,) */
        snprintf(path, sizeof path, "%s/layer%zu.bias.npy", dir, nth);
        if (snn_npy_load(path, &x, shape, &ndim, err, errlen) != 0) goto cleanup;
        shape_text(want, sizeof want, wshape, 1);
        shape_text(got, sizeof got, shape, ndim);
        if (ndim != 1 || shape[0] != L->oc) {
            snprintf(err, errlen, "%s: layer %zu of network %s needs biases of shape %s, not %s", path, nth,
                     snn_net_name(id), want, got);
            goto cleanup;
        }
        for (i = 0; i < L->oc; i++)
            if (import_value(&param[L->boff + i], x[i], path, i, err, errlen) != 0) goto cleanup;
        free(x);
        x = NULL;
    }
    rc = 0;
cleanup:
    free(x);
    return rc;
}

/* ==== 14. Jobs: the servers' side and the owner's side =================== */
/*
 * The job block, 48 bytes, little-endian, sent by the owner to P0, P1 and
 * P2 as Setup step 2 (bytes).  All of it is public:
 *   off size field
 *     0    4 magic "SNNJ"
 *     4    4 version, 3
 *     8    4 command: 1 train, 2 infer, 3 train then infer (the demo)
 *    12    4 network id 0..3 (A..D)
 *    16    4 batch size, a power of two, 1..256
 *    20    4 training iterations (0 unless training)
 *    24    4 learning-rate shift: lr = 2^-shift (0 unless training)
 *    28    4 images to classify (0 unless inferring)
 *    32    4 progress every this many iterations; 0: none (0 unless training)
 *    36    4 learning-rate step: the shift grows by 1 every this many
 *            iterations; 0: constant (0 unless training)
 *    40    4 first iteration: a resumed run starts there, with that
 *            iteration's learning rate (0 unless training)
 *    44    4 checkpoint: the weights go to the owner after every this
 *            many iterations of the run; 0: at the end only (0 unless
 *            training)
 */

#define JOB_VERSION 3u

/* snn_lr_shift_at -- the learning-rate shift of training step it (from 0):
 * a step schedule, lr_shift + floor(it / lr_step), or lr_shift if
 * lr_step = 0.  The owner's choice, public like every job field. */
unsigned snn_lr_shift_at(unsigned lr_shift, size_t lr_step, size_t it)
{
    return lr_shift + (lr_step ? (unsigned)(it / lr_step) : 0u);
}

/* The job block of the layout above. */
static void job_encode(unsigned char b[SNN_JOB_BYTES], const snn_job *j)
{
    memcpy(b, "SNNJ", 4);
    snn_store32_le(b + 4, JOB_VERSION);
    snn_store32_le(b + 8, j->cmd);
    snn_store32_le(b + 12, j->net);
    snn_store32_le(b + 16, j->batch);
    snn_store32_le(b + 20, j->iters);
    snn_store32_le(b + 24, j->lr_shift);
    snn_store32_le(b + 28, j->n_infer);
    snn_store32_le(b + 32, j->report);
    snn_store32_le(b + 36, j->lr_step);
    snn_store32_le(b + 40, j->start);
    snn_store32_le(b + 44, j->checkpoint);
}

/* snn_job_check -- every field within its range; 0, or -1 and a message. */
int snn_job_check(const snn_job *j, char *err, size_t errlen)
{
    int train = (j->cmd & SNN_JOB_TRAIN) != 0, infer = (j->cmd & SNN_JOB_INFER) != 0;
    if (j->cmd < 1 || j->cmd > 3) {
        snprintf(err, errlen, "job: unknown command %u", (unsigned)j->cmd);
        return -1;
    }
    if (j->net >= SNN_NET_COUNT) {
        snprintf(err, errlen, "job: unknown network id %u", (unsigned)j->net);
        return -1;
    }
    if (j->batch < 1 || j->batch > NN_MAX_BATCH || (j->batch & (j->batch - 1)) != 0) {
        snprintf(err, errlen, "job: batch %u is not a power of two in 1..%d", (unsigned)j->batch, NN_MAX_BATCH);
        return -1;
    }
    if (train) {
        if (j->net == SNN_NET_D) {
            snprintf(err, errlen, "job: network D is for inference only ([SNN, App. B])");
            return -1;
        }
        if (j->iters < 1 || j->iters > NN_MAX_ITERS) {
            snprintf(err, errlen, "job: %u training iterations, not in 1..%u", (unsigned)j->iters, NN_MAX_ITERS);
            return -1;
        }
        if (j->lr_shift > NN_MAX_LR_SHIFT) {
            snprintf(err, errlen, "job: learning-rate shift %u above %u", (unsigned)j->lr_shift, NN_MAX_LR_SHIFT);
            return -1;
        }
        if (snn_lr_shift_at(j->lr_shift, j->lr_step, j->iters - 1) > NN_MAX_LR_SHIFT) {
            snprintf(err, errlen, "job: learning-rate step %u: the shift passes %u within %u iterations",
                     (unsigned)j->lr_step, NN_MAX_LR_SHIFT, (unsigned)j->iters);
            return -1;
        }
        if (j->report > j->iters) {
            snprintf(err, errlen, "job: progress every %u of %u iterations", (unsigned)j->report, (unsigned)j->iters);
            return -1;
        }
        if (j->start >= j->iters) {
            snprintf(err, errlen, "job: starts at iteration %u of %u", (unsigned)j->start + 1, (unsigned)j->iters);
            return -1;
        }
        if (j->checkpoint > j->iters) {
            snprintf(err, errlen, "job: a checkpoint every %u of %u iterations", (unsigned)j->checkpoint,
                     (unsigned)j->iters);
            return -1;
        }
    } else if (j->iters != 0 || j->lr_shift != 0 || j->report != 0 || j->lr_step != 0 || j->start != 0
               || j->checkpoint != 0) {
        snprintf(err, errlen, "job: training fields set in a job that does not train");
        return -1;
    }
    if (infer) {
        if (j->n_infer < 1 || j->n_infer > NN_MAX_ITERS) {
            snprintf(err, errlen, "job: %u images to classify, not in 1..%u", (unsigned)j->n_infer, NN_MAX_ITERS);
            return -1;
        }
    } else if (j->n_infer != 0) {
        snprintf(err, errlen, "job: images to classify in a job that does not infer");
        return -1;
    }
    return 0;
}

/* Decodes and checks a received job block. */
static int job_decode(snn_job *j, const unsigned char b[SNN_JOB_BYTES], char *err, size_t errlen)
{
    if (memcmp(b, "SNNJ", 4) != 0) {
        snprintf(err, errlen, "job: bad magic, not a SecureNN job");
        return -1;
    }
    if (snn_load32_le(b + 4) != JOB_VERSION) {
        snprintf(err, errlen, "job: version %u, this server reads %u", (unsigned)snn_load32_le(b + 4), (unsigned)JOB_VERSION);
        return -1;
    }
    j->cmd = snn_load32_le(b + 8);
    j->net = snn_load32_le(b + 12);
    j->batch = snn_load32_le(b + 16);
    j->iters = snn_load32_le(b + 20);
    j->lr_shift = snn_load32_le(b + 24);
    j->n_infer = snn_load32_le(b + 28);
    j->report = snn_load32_le(b + 32);
    j->lr_step = snn_load32_le(b + 36);
    j->start = snn_load32_le(b + 40);
    j->checkpoint = snn_load32_le(b + 44);
    return snn_job_check(j, err, errlen);
}

/*
 * Traffic among the servers, for the owner's progress report.  Pj counts
 * the payload bytes it sends to the other servers and those it receives
 * from P2 (P2 sends only to P0 and P1), so c_0 + c_1 is every byte the
 * three servers exchange; frames to or from the owner are not counted.
 * Pj reveals c_j to the owner with snn_reveal, so the owner learns c_0 and
 * c_1: byte counts that the job's public sizes fix anyway, not data.
 */
typedef struct {
    uint64_t  c;
    snn_hook  prev;
    void     *prev_ctx;
} serve_traffic;

/* The frame hook that keeps c_j (above); chains to any earlier hook. */
static void traffic_hook(void *ctx, const struct snn_party_ *p, snn_frame *f)
{
    serve_traffic *t = ctx;
    if (f->from != SNN_CLIENT && f->to != SNN_CLIENT && (f->dir == 0 || f->from == 2))
        t->c += f->nbytes;
    if (t->prev) t->prev(t->prev_ctx, p, f);
}

/* snn_nn_recv_job -- a server receives the owner's job block (Setup
 * step 2) and checks it.  0, or -1 with p->err set. */
int snn_nn_recv_job(snn_party *p, snn_job *job)
{
    unsigned char jb[SNN_JOB_BYTES];
    char msg[160];
    if (snn_recv(p, SNN_CLIENT, SNN_PROTO_SETUP, 2, SNN_KIND_BYTES, jb, sizeof jb) != 0) return -1;
    if (job_decode(job, jb, msg, sizeof msg) != 0) return snn_fail(p, SNN_ERR_PROTO, "%s", msg);
    return 0;
}

/* snn_nn_serve -- snn_nn_recv_job, then snn_nn_run_job. */
int snn_nn_serve(snn_party *p)
{
    snn_job job;
    if (snn_nn_recv_job(p, &job) != 0) return -1;
    return snn_nn_run_job(p, &job);
}

/* The servers' inference: batches of images from the owner, their classes
 * to the owner, then the servers' traffic of the inference. */
static int serve_infer(snn_nn_ctx *c, const snn_job *job, snn_nn_state *s, const uint64_t *param, uint64_t *x,
                       uint64_t *cls, const serve_traffic *tr)
{
    snn_party *p = c->p;
    const size_t B = job->batch;
    uint64_t base = tr->c;
    size_t done, m;
    for (done = 0; done < job->n_infer; done += m) {
        m = job->n_infer - done < B ? job->n_infer - done : B;
        if (snn_share(p, SNN_CLIENT, x, NULL, m * SNN_NN_IN) != 0
            || snn_nn_forward(c, s, param, p->id == 2 ? NULL : x, m) != 0
            || snn_nn_predict(c, cls, s, m) != 0
            || snn_reveal(p, SNN_CLIENT, NULL, cls, m) != 0)
            return -1;
    }
    base = tr->c - base;
    return snn_reveal(p, SNN_CLIENT, NULL, &base, 1);
}

/*
 * snn_nn_run_job -- the servers' side of one received job (P0, P1, P2
 * alike): receive the parameter shares, run it, and reveal to the owner
 * what it is entitled to (see the file comment).  Returns 0, or -1 with
 * p->err set.
 */
int snn_nn_run_job(snn_party *p, const snn_job *jp)
{
    snn_job job = *jp;
    snn_nn_ctx c = snn_nn_secure(p);
    char msg[160];
    snn_net net;
    snn_nn_state s;
    serve_traffic tr;
    uint64_t *param = NULL, *x = NULL, *y = NULL, *cls = NULL;
    size_t B;
    int rc = -1, hooked = 0;

    memset(&s, 0, sizeof s);
    memset(&net, 0, sizeof net);
    B = 0;
    if (p->err) return -1;
    if (snn_job_check(&job, msg, sizeof msg) != 0) return snn_fail(p, SNN_ERR_ARG, "%s", msg);
    tr.c = 0; tr.prev = p->net.hook; tr.prev_ctx = p->net.hook_ctx;
    p->net.hook = traffic_hook;
    p->net.hook_ctx = &tr;
    hooked = 1;
    snn_net_init(&net, (int)job.net);
    B = job.batch;
    if (snn_nn_state_alloc(&s, &net, B) != 0 || !(param = nn_alloc(net.nparam))
        || !(x = nn_alloc(B * SNN_NN_IN)) || !(y = nn_alloc(B * SNN_NN_OUT)) || !(cls = nn_alloc(B))) {
        snn_fail(p, SNN_ERR_NOMEM, "job: out of memory");
        goto cleanup;
    }
    /* The owner's initial weights or model, shared to P0 and P1 */
    SNN_GUARD(snn_share(p, SNN_CLIENT, param, NULL, net.nparam));
    if (job.cmd & SNN_JOB_TRAIN) SNN_GUARD(serve_train(&c, &job, &s, param, x, y, &tr.c));
    if (job.cmd & SNN_JOB_INFER) SNN_GUARD(serve_infer(&c, &job, &s, param, x, cls, &tr));
    rc = 0;
cleanup:
    if (hooked) { p->net.hook = tr.prev; p->net.hook_ctx = tr.prev_ctx; }
    snn_nn_state_free(&s);
    nn_free(param, net.nparam);
    nn_free(x, B * SNN_NN_IN);
    nn_free(y, B * SNN_NN_OUT);
    nn_free(cls, B);
    return rc;
}

/*
 * asm_check -- the ASM outputs revealed at training step it (B x 10) are
 * each in [0, 1] and sum to at most 1 per image: ASM is exact in range
 * (Pi_ReLU, Pi_Div), so anything else means that a value left the
 * protocols' range, e.g. by a failed truncation (SPEC 4.2 d).  The loss
 * sum_k (q_k - y_k)^2 of valid outputs is at most 2.  0, or -1 with the
 * reason in why (the owner's own note: see snn_nn_owner).
 */
static int asm_check(char *why, size_t n, const uint64_t *q, size_t B, size_t it)
{
    size_t i, k;
    for (i = 0; i < B; i++) {
        uint64_t sum = 0;
        for (k = 0; k < SNN_NN_OUT; k++) {
            const uint64_t v = q[i * SNN_NN_OUT + k];
            if (v > (uint64_t)1 << F) {
                snprintf(why, n, "Reveal step 1: training step %zu, image %zu: ASM output %zu is %.4f, outside "
                         "[0, 1]: a value left the protocols' range (a failed truncation?)", it + 1, i, k,
                         snn_decode(v));
                return -1;
            }
            sum += v;
        }
        if (sum > (uint64_t)1 << F) {
            snprintf(why, n, "Reveal step 1: training step %zu, image %zu: ASM outputs sum to %.4f, above 1: a "
                     "value left the protocols' range (a failed truncation?)", it + 1, i, snn_decode(sum));
            return -1;
        }
    }
    return 0;
}

/* The owner's side of one job while it runs: what snn_nn_owner's steps
 * share.  failed: the first failed check, reported at the end. */
typedef struct {
    snn_party     *o;
    const snn_job *job;
    snn_owner_io  *io;
    snn_net        net;
    batcher        bt;
    uint64_t      *x, *y, *q;       /* one batch: images, labels, ASM outputs */
    uint8_t       *lab;
    char           failed[512];
} owner_job;

/* The weights revealed at step `done` (or at the end: done = 0) checked
 * against the protocols' ranges; a failure is noted in oj->failed. */
static void owner_check_weights(owner_job *oj, size_t done)
{
    snn_nn_range range;
    char where[160], when[64];
    if (oj->failed[0] || snn_nn_check_range(&oj->net, oj->io->param, oj->job->batch, done != 0, &range) == 0)
        return;
    snn_nn_layer_name(where, sizeof where, &oj->net, range.layer);
    if (done) snprintf(when, sizeof when, "the weights at step %zu", done);
    else snprintf(when, sizeof when, "the trained weights");
    snprintf(oj->failed, sizeof oj->failed, "Reveal step 1: %s allow, at %s, %s: a failed truncation or a "
             "diverging training", when, where, range.why);
}

/* After training step it, what the servers reveal (serve_step_end):
 * progress, reported to io->progress, and a checkpoint, saved by
 * io->checkpoint, each only while no check has failed. */
static int owner_step_end(owner_job *oj, size_t it, snn_progress *pr)
{
    snn_party *o = oj->o;
    const snn_job *job = oj->job;
    const size_t B = job->batch;
    uint64_t traffic;
    if (job->report) {
        if (snn_reveal(o, SNN_CLIENT, oj->q, NULL, B * SNN_NN_OUT) != 0) return -1;
        if (!oj->failed[0]) (void)asm_check(oj->failed, sizeof oj->failed, oj->q, B, it);
        progress_add(pr, oj->q, oj->lab, B);
        if (report_due(it, job->iters, job->report)) {
            if (snn_reveal(o, SNN_CLIENT, &traffic, NULL, 1) != 0) return -1;
            pr->iter = it + 1;
            pr->bytes = traffic;
            if (oj->io->progress && !oj->failed[0]) oj->io->progress(oj->io->ctx, pr);
            pr->seen = pr->correct = 0;
            pr->sqerr = 0;
        }
    }
    if (ckpt_due(it, job->iters, job->checkpoint)) {
        if (snn_reveal(o, SNN_CLIENT, oj->io->param, NULL, oj->net.nparam) != 0) return -1;
        owner_check_weights(oj, it + 1);
        if (!oj->failed[0]) {
            char why[200] = "";
            if (oj->io->checkpoint(oj->io->checkpoint_ctx, it + 1, oj->io->param, NULL, why, sizeof why) != 0)
                return snn_fail(o, SNN_ERR_IO, "the checkpoint after step %zu was not saved: %s; stopping", it + 1,
                                why);
        }
    }
    return 0;
}

/* The owner's training loop: per step, the batch P0 asks for, shared to
 * P0 and P1, then what the step reveals (owner_step_end); then the
 * trained weights into io->param. */
static int owner_train(owner_job *oj)
{
    snn_party *o = oj->o;
    const snn_job *job = oj->job;
    const size_t B = job->batch;
    snn_progress pr;
    size_t it;
    memset(&pr, 0, sizeof pr);
    pr.iters = job->iters;
    pr.start = job->start;
    batcher_skip(&oj->bt, oj->io->order, B, job->start);      /* a resumed run: the order so far */
    for (it = job->start; it < job->iters; it++) {
        uint64_t want;
        /* Flow control: batch it goes out when P0 asks for it */
        if (snn_recv_zl(o, 0, SNN_PROTO_SETUP, 4, &want, 1) != 0) return -1;
        if (want != it)
            return snn_fail(o, SNN_ERR_PROTO, "Setup step 4: P0 asks for the batch of step %llu, expected %zu",
                            (unsigned long long)want, it);
        batcher_next(&oj->bt, oj->io->order, oj->io->train, B, oj->x, oj->y, oj->lab);
        if (snn_share(o, SNN_CLIENT, NULL, oj->x, B * SNN_NN_IN) != 0
            || snn_share(o, SNN_CLIENT, NULL, oj->y, B * SNN_NN_OUT) != 0 || owner_step_end(oj, it, &pr) != 0)
            return -1;
    }
    if (snn_reveal(o, SNN_CLIENT, oj->io->param, NULL, oj->net.nparam) != 0) return -1;
    owner_check_weights(oj, 0);
    return 0;
}

/* The owner's inference: the test images in batches, their classes into
 * io->pred (each checked to be 0..9), then the servers' traffic. */
static int owner_infer(owner_job *oj)
{
    snn_party *o = oj->o;
    snn_owner_io *io = oj->io;
    const size_t B = oj->job->batch, n = oj->job->n_infer;
    size_t done, m, i;
    if (io->infer_progress) io->infer_progress(io->ctx, 0, n);
    for (done = 0; done < n; done += m) {
        m = n - done < B ? n - done : B;
        snn_nn_encode_images(oj->x, io->test->images + done * SNN_NN_IN, m);
        if (snn_share(o, SNN_CLIENT, NULL, oj->x, m * SNN_NN_IN) != 0
            || snn_reveal(o, SNN_CLIENT, io->pred + done, NULL, m) != 0)
            return -1;
        for (i = done; i < done + m && !oj->failed[0]; i++)
            if (io->pred[i] >= SNN_NN_OUT)
                snprintf(oj->failed, sizeof oj->failed, "Reveal step 1: predicted class %llu of image %zu is not 0..9",
                         (unsigned long long)io->pred[i], i);
        if (io->infer_progress) io->infer_progress(io->ctx, done + m, n);
    }
    return snn_reveal(o, SNN_CLIENT, &io->infer_bytes, NULL, 1);
}

/*
 * snn_nn_owner -- the owner's side of one job: send the job block to P0, P1
 * and P2, secret-share the parameters (io->param) to P0 and P1, then per
 * training step a batch of images and one-hot labels; receive the progress
 * (if job->report), the trained weights (into io->param), and for inference
 * the predicted classes (io->pred) and the servers' traffic (io->infer_bytes).
 * o must be connected (snn_connect_client_tcp) with its private stream set
 * (snn_setup_keys).  Returns 0, or -1 with o->err set.
 *
 * The checks of what is revealed (ASM outputs, weights, classes) never
 * change what the servers see: a failed one is noted, the job goes on
 * frame for frame as if it had passed (no progress reported and no
 * checkpoint saved after it), and the first failure is the error
 * returned at the end.  Otherwise a malicious P0 or P1, adding Delta to
 * its share of a revealed value, would learn from the owner hanging up
 * whether the value crosses a threshold of its choice (SPEC 4.2 i).
 */
int snn_nn_owner(snn_party *o, const snn_job *job, snn_owner_io *io)
{
    unsigned char jb[SNN_JOB_BYTES];
    char msg[160];
    owner_job oj;
    const size_t B = job->batch;
    snn_nn_range range;
    size_t k;
    int rc = -1;

    memset(&oj, 0, sizeof oj);
    oj.o = o;
    oj.job = job;
    oj.io = io;
    if (o->err) return -1;
    if (snn_job_check(job, msg, sizeof msg) != 0) return snn_fail(o, SNN_ERR_ARG, "%s", msg);
    if ((job->cmd & SNN_JOB_TRAIN) && (!io->train || io->train->n < B))
        return snn_fail(o, SNN_ERR_ARG, "fewer training images than one batch of %zu", B);
    if ((job->cmd & SNN_JOB_INFER) && (!io->test || io->test->n < job->n_infer))
        return snn_fail(o, SNN_ERR_ARG, "fewer test images than %u", (unsigned)job->n_infer);
    snn_net_init(&oj.net, (int)job->net);
    /* The model must keep every value within the protocols' ranges for
     * any image, or the results would be silently wrong (SPEC 4.2 c, d) */
    if (snn_nn_check_range(&oj.net, io->param, B, (job->cmd & SNN_JOB_TRAIN) != 0, &range) != 0) {
        snn_nn_layer_name(msg, sizeof msg, &oj.net, range.layer);
        return snn_fail(o, SNN_ERR_RANGE, "the model's weights allow, at %s, %s; refusing the job", msg, range.why);
    }
    if (!(oj.x = nn_alloc(B * SNN_NN_IN)) || !(oj.y = nn_alloc(B * SNN_NN_OUT)) || !(oj.q = nn_alloc(B * SNN_NN_OUT))
        || !(oj.lab = malloc(B)) || ((job->cmd & SNN_JOB_TRAIN) && batcher_init(&oj.bt, io->train->n) != 0)) {
        snn_fail(o, SNN_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if ((job->cmd & SNN_JOB_TRAIN) && job->checkpoint && !io->checkpoint) {
        snn_fail(o, SNN_ERR_ARG, "a job with checkpoints needs somewhere to save them");
        goto cleanup;
    }
    job_encode(jb, job);
    for (k = 0; k < SNN_NPARTY; k++)
        SNN_GUARD(snn_send(o, (int)k, SNN_PROTO_SETUP, 2, SNN_KIND_BYTES, jb, sizeof jb));
    SNN_GUARD(snn_share(o, SNN_CLIENT, NULL, io->param, oj.net.nparam));
    if (job->cmd & SNN_JOB_TRAIN) SNN_GUARD(owner_train(&oj));
    if (job->cmd & SNN_JOB_INFER) SNN_GUARD(owner_infer(&oj));
    /* Every frame of the job has gone as it would have: now, and only
     * here, the owner says what failed */
    if (oj.failed[0]) {
        snn_fail(o, SNN_ERR_RANGE, "%s; the job was run to its end so that no server could tell, and its "
                 "results are not kept", oj.failed);
        goto cleanup;
    }
    rc = 0;
cleanup:
    batcher_free(&oj.bt);
    nn_free(oj.x, B * SNN_NN_IN);
    nn_free(oj.y, B * SNN_NN_OUT);
    nn_free(oj.q, B * SNN_NN_OUT);
    snn_free_wiped(oj.lab, B);
    return rc;
}

/* ==== 15. Transcripts: a party's view, frame by frame ==================== */
/*
 * A transcript is what one party sees: every frame it sends or receives,
 * with the randomness it drew before each, and totals per protocol.  It is
 * written by a frame hook (snn_party.net.hook, called by net.c's choke point
 * for every frame) that only reads: the frame, and the positions of the
 * party's ChaCha20 streams.  So a run with a transcript computes and sends
 * exactly what it does without one (test transcript_same).
 *
 * Format 1, one record per line, fields separated by single spaces:
 *   # ...                 the header: party, format
 *   draw PROTO STREAM B   B bytes drawn from STREAM (K01, K02, K12, own)
 *                         since the previous frame, before this party's
 *                         next frame, which is one of PROTO
 *   frame R DIR PEER PROTO STEP RING N B V...
 *                         round stamp R; DIR send or recv; PEER P0, P1, P2
 *                         or owner; protocol and SPEC step; ring Z_L,
 *                         Z_{L-1}, Z_p, bit or byte; N elements, B payload
 *                         bytes; the first (up to 4) elements in hex
 *                         (16 digits for Z_L and Z_{L-1}, 2 otherwise), or
 *                         "secret" for key material (Setup steps 0, 1, 4)
 *   call PROTO frames F sent S recv R rounds K STREAM=B...
 *                         one call as the transcript sees it: a run of
 *                         consecutive frames of one protocol (the innermost:
 *                         DReLU's frames are ShareConvert's, ComputeMSB's
 *                         and PrivateCompare's); rounds K = the highest
 *                         round stamp of the run less the lowest, plus 1;
 *                         STREAM=B the bytes drawn before its frames
 *   total PROTO frames F sent S recv R rounds K STREAM=B...
 *                         the sums over the calls of PROTO
 *   total all frames F sent S recv R rounds K
 *                         every frame; K the highest round stamp seen
 * The payload bytes of the frame lines add up to the party's counters
 * (snn_stats), frame headers excluded as there.
 */

#define TR_NSTREAM 5                       /* K01, K02, K12, own, and none */

/* Stream k of party p: 0 K01, 1 K02, 2 K12, 3 own; NULL if p has none. */
static const snn_prg *tr_stream(const snn_party *p, int k)
{
    static const int ends[3][2] = { { 0, 1 }, { 0, 2 }, { 1, 2 } };
    if (k == 3) return &p->own;
    if (p->id == ends[k][0] && p->have_pair[ends[k][1]]) return &p->pair[ends[k][1]];
    if (p->id == ends[k][1] && p->have_pair[ends[k][0]]) return &p->pair[ends[k][0]];
    return NULL;
}

static const char *tr_stream_name(int k)
{
    static const char names[4][4] = { "K01", "K02", "K12", "own" };
    return names[k];
}

/* Where each stream of p stands now (bytes drawn since it was keyed). */
static void tr_positions(const snn_party *p, uint64_t pos[4])
{
    int k;
    for (k = 0; k < 4; k++) {
        const snn_prg *g = tr_stream(p, k);
        pos[k] = g ? snn_prg_position(g) : 0;
    }
}

/* One "call" or "total" line's figures. */
static void tr_figures(FILE *f, const snn_tr_sum *s)
{
    int k;
    fprintf(f, " frames %llu sent %llu recv %llu rounds %llu", (unsigned long long)s->frames,
            (unsigned long long)s->sent, (unsigned long long)s->recv, (unsigned long long)s->rounds);
    for (k = 0; k < 4; k++)
        if (s->drawn[k]) fprintf(f, " %s=%llu", tr_stream_name(k), (unsigned long long)s->drawn[k]);
    fputc('\n', f);
}

/* Ends the current call, if any: its line, and its sums into the totals. */
static void tr_end_call(snn_transcript *t)
{
    snn_tr_sum *c = &t->call, *s;
    int k;
    if (t->call_proto < 0) return;
    c->rounds = (uint64_t)(t->call_hi - t->call_lo) + 1;
    fprintf(t->f, "call %s", snn_proto_name(t->call_proto));
    tr_figures(t->f, c);
    s = &t->sum[t->call_proto];
    s->frames += c->frames;
    s->sent += c->sent;
    s->recv += c->recv;
    s->rounds += c->rounds;
    for (k = 0; k < 4; k++) s->drawn[k] += c->drawn[k];
    memset(c, 0, sizeof *c);
    t->call_proto = -1;
}

/* Whether a frame's payload is key material, not to be written down. */
static int tr_secret(const snn_frame *fr)
{
    return fr->proto == SNN_PROTO_SETUP && fr->kind == SNN_KIND_BYTES && fr->step != 2 && fr->step != 3;
}

/* The hook: one frame. */
static void tr_hook(void *ctx, const struct snn_party_ *p, snn_frame *fr)
{
    snn_transcript *t = ctx;
    uint64_t pos[4];
    size_t i, esz = fr->count ? fr->nbytes / fr->count : 0;
    int k;

    if (t->f) {
        if (t->call_proto != fr->proto) {
            tr_end_call(t);
            t->call_proto = fr->proto;
            t->call_lo = t->call_hi = fr->round;
        }
        tr_positions(p, pos);
        for (k = 0; k < 4; k++)
            if (pos[k] != t->pos[k]) {
                fprintf(t->f, "draw %s %s %llu\n", snn_proto_name(fr->proto), tr_stream_name(k),
                        (unsigned long long)(pos[k] - t->pos[k]));
                t->call.drawn[k] += pos[k] - t->pos[k];
                t->pos[k] = pos[k];
            }
        fprintf(t->f, "frame %lu %s %s %s %d %s %zu %zu", (unsigned long)fr->round, fr->dir ? "recv" : "send",
                snn_endpoint_name(fr->dir ? fr->from : fr->to), snn_proto_name(fr->proto), fr->step,
                snn_kind_name(fr->kind), fr->count, fr->nbytes);
        if (tr_secret(fr)) {
            fputs(" secret", t->f);
        } else {
            for (i = 0; i < fr->count && i < 4; i++) {
                if (esz == 8) fprintf(t->f, " %016llx", (unsigned long long)snn_load64_le(fr->payload + 8 * i));
                else fprintf(t->f, " %02x", (unsigned)fr->payload[i]);
            }
        }
        fputc('\n', t->f);
        t->call.frames++;
        if (fr->dir) t->call.recv += fr->nbytes;
        else t->call.sent += fr->nbytes;
        if (fr->round < t->call_lo) t->call_lo = fr->round;
        if (fr->round > t->call_hi) t->call_hi = fr->round;
        if (fr->round > t->max_round) t->max_round = fr->round;
    }
    if (t->prev) t->prev(t->prev_ctx, p, fr);
}

/* snn_transcript_open -- see securenn.h. */
int snn_transcript_open(snn_transcript *t, snn_party *p, const char *path, int append, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->call_proto = -1;
    if (!(t->f = fopen_private(path, append ? "a" : "w"))) {
        snprintf(err, errlen, "--transcript: cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    t->p = p;
    tr_positions(p, t->pos);
    fprintf(t->f, "# SecureNN transcript of %s, format 1 (see nn.c, section 15)\n", snn_endpoint_name(p->id));
    t->prev = p->net.hook;
    t->prev_ctx = p->net.hook_ctx;
    p->net.hook = tr_hook;
    p->net.hook_ctx = t;
    return 0;
}

/* snn_transcript_close -- see securenn.h. */
int snn_transcript_close(snn_transcript *t, char *err, size_t errlen)
{
    snn_tr_sum all;
    int k, rc = 0;
    if (!t->f) return 0;
    if (t->p->net.hook == tr_hook && t->p->net.hook_ctx == t) {
        t->p->net.hook = t->prev;
        t->p->net.hook_ctx = t->prev_ctx;
    }
    tr_end_call(t);
    memset(&all, 0, sizeof all);
    for (k = 0; k < SNN_PROTO_COUNT; k++) {
        const snn_tr_sum *s = &t->sum[k];
        if (!s->frames) continue;
        fprintf(t->f, "total %s", snn_proto_name(k));
        tr_figures(t->f, s);
        all.frames += s->frames;
        all.sent += s->sent;
        all.recv += s->recv;
    }
    all.rounds = t->max_round;
    fputs("total all", t->f);
    tr_figures(t->f, &all);
    if (ferror(t->f)) rc = -1;
    if (fclose(t->f) != 0) rc = -1;
    t->f = NULL;
    if (rc != 0) snprintf(err, errlen, "--transcript: write failed");
    return rc;
}

/* ==== 16. The program ./securenn ========================================= */
/*
 * The command-line program, a part of its own: compiled only with
 * -DSNN_PROGRAM (the test runner links the library above without it).  It
 * sits on top of everything else: it calls the jobs, layers, protocols and
 * the network, nothing below calls it, and its only state is main's
 * locals.  Each command is a short function; what the commands share is
 * written once (16b).
 *
 *   16a. Options: the usage text, the option table and its parser
 *        (each command's entry sits beside its function, help_CMD)
 *   16b. Shared: display, seeds, the servers' side of a job (run_party),
 *        the plan of a job, the owner's side (owner_prepare, owner_run),
 *        forked parties and the twin
 *   16c. demo: three forked servers and the owner, step by step
 *   16d. Owner commands against running servers (`party`): train, infer
 *   16e. bench: [SNN] Tables 7 and 8 side by side
 *   16f. explain: one protocol, step by step, for a lecture
 *   16g. keygen and import
 *   16h. The command table and main: one row per command (name, operands,
 *        options, help, function) drives dispatch, the option check and
 *        `securenn CMD --help`
 *
 * The owner's data, model and seed are wiped before they are freed, as
 * every share buffer of the library is (snn_free_wiped).
 */
#ifdef SNN_PROGRAM

#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <ctype.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#if defined(__GLIBC__)
#include <malloc.h>             /* mallopt: see heap_keep */
#endif

/* ---- 16a. Options -------------------------------------------------------- */

/* The front of securenn --help; the command list follows, from the
 * command table (main), then the options and the notes. */
static const char usage_head[] =
"usage: securenn COMMAND [OPTIONS]\n"
"\n"
"SecureNN [SNN]: three servers P0, P1 (additive shares over Z_2^64) and P2\n"
"(helper) train and run neural networks on MNIST; no single server learns the\n"
"data or the model.  The data and model owner talks to all three.\n"
"\n"
"Commands:\n";

/* The options (a second string: C99 promises only 4095 bytes per literal). */
static const char usage_options[] =
"\n"
"Options (command: default):\n"
"  --net A|B|C|D   network of [SNN, App. B] (A)\n"
"  --epochs E      epochs over the training split (train: A 15, B/C 5, as [SNN];\n"
"                  demo: A 1 (minutes), B/C 1 (securely, about an hour);\n"
"                  demo --plain of B/C, and D: 2)\n"
"  --iters N       training iterations; overrides --epochs\n"
"  --batch B       batch size, a power of two up to 256 (128, as [SNN];\n"
"                  demo: A 64, B/C 128, --plain of B/C and D 16)\n"
"  --lr-shift K    learning rate 2^-K (train: A 7, B/C 5, as [SNN]; demo: A 3,\n"
"                  B/C 4, --plain of B/C and D 5: the demo's single epoch needs a\n"
"                  larger rate than the paper's 15)\n"
"  --lr-step N     halve the learning rate every N iterations, a step schedule\n"
"                  (0: constant) (train: 0; demo: A half the run, B/C 0)\n"
"  --every N       progress every N iterations (train: one epoch; demo: a tenth\n"
"                  of the run)\n"
"  --quiet         no progress: nothing is revealed to the owner while training\n"
"                  (but the weights at each --checkpoint);\n"
"                  party: no status lines (listening, connected, job, summary)\n"
"  --data DIR      MNIST IDX files train-* and t10k-* (data)\n"
"  --test-n N      classify only the first N test images (all)\n"
"  --model FILE    train, demo: save the trained model; infer: the model to use\n"
"  --no-save       train: run without --model (the trained weights are lost)\n"
"  --checkpoint N  train, demo: every N iterations the owner receives the weights\n"
"                  and saves them with the run's state to MODEL.ckpt (--model)\n"
"  --resume FILE   train, demo: continue the run saved in checkpoint FILE (its\n"
"                  network, batch, schedule and seed; --iters/--epochs may\n"
"                  extend it), on the same --data\n"
"  --predictions FILE  infer, demo: one line per test image, \"index label\n"
"                  predicted\"; a confusion matrix is printed either way\n"
"  --seed S        demo, train: the owner's initial weights and batch order\n"
"                  derive from S (default: from the OS; printed).  Keys and share\n"
"                  masks never do\n"
"  --key-seed S    demo, party, train, infer, bench: every key and share mask of\n"
"                  this party derives from S, so anyone who knows S can read the\n"
"                  data: for reproducible tests on one machine only, refused\n"
"                  unless every peer is a loopback address (default: the OS;\n"
"                  bench: 1)\n"
"  --peers LIST    party, train, infer: h0:p0,h1:p1,h2:p2\n"
"                  (127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002)\n"
"  --port P        demo, bench, infer --local: the parties listen on P, P+1,\n"
"                  P+2 (demo and infer 7000,\n"
"                  bench 7100)\n"
"  --timeout SEC   bound on every network wait but the owner's arrival (120)\n"
"  --owner-wait SEC  party: bound on the wait for the owner to connect, once\n"
"                  the servers are connected (0: no limit, Ctrl-C stops) (0)\n"
"";

/* The options, continued (each literal under C99's 4095 bytes). */
static const char usage_options2[] =
"  --keys DIR      party, train, infer, demo: seal every channel\n"
"                  (ChaCha20-Poly1305) with the pair keys in DIR, made by keygen;\n"
"                  each machine needs only its own three files.  Without --keys\n"
"                  the channels are in the clear and every peer must be on\n"
"                  loopback (127.0.0.1, ::1)\n"
"  --insecure      party, train, infer: without --keys, allow peers that are not\n"
"                  on loopback, in the clear (a warning on stderr)\n"
"  --transcript DIR  demo, party, train, infer, bench: each party writes its\n"
"                  view, one line per frame sent or received, to DIR/P0.log,\n"
"                  P1.log, P2.log (the owner: DIR/owner.log); format in nn.c,\n"
"                  section 15\n"
"  --local         infer: fork P0, P1, P2 on 127.0.0.1 (ports --port, 7000) as\n"
"                  demo does, instead of using three running parties\n"
"  --plain         demo: run only the plaintext twin, in this process\n"
"  --no-twin       demo: skip the plaintext comparison\n"
"  --reps N        bench: timed repetitions per row after one warm-up; the\n"
"                  median, min and max are shown (3)\n"
"  --csv           bench: one line per row, name,dims,ms_median,ms_min,ms_max,\n"
"                  bytes,rounds,paper_ms,paper_mb,peak_rss_kb (paper_ms: the\n"
"                  paper's WAN time when --latency is given, else its LAN time)\n"
"  --latency MS    bench, demo, party, train, infer: WAN emulation, every frame\n"
"                  a party receives is delivered MS milliseconds late (0: off);\n"
"                  bench then prints the paper's WAN figures beside its rows\n"
"  --bandwidth MB  the same, pacing each link to MB megabytes (10^6 bytes) per\n"
"                  second, the paper's unit (0: unlimited)\n";

/* The notes (a third string, for the same reason). */
static const char usage_notes[] =
"\n"
"The owner encodes each pixel p as 4 p/255 - 1/2 (standardised, about\n"
"(p/255 - mean) / std for MNIST) in fixed point with 13 fractional bits.\n"
"Progress during training (loss, running accuracy) comes from the ASM outputs\n"
"revealed to the owner, who owns both the data and the model; --quiet reveals\n"
"nothing until the trained weights.  Model file format: README.md (Models).\n";

/* The program's one-line errors: "securenn: ..." on stderr. */
#define PERR(...) (fputs("securenn: ", stderr), fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))

enum { OPT_NET = 1 << 0, OPT_EPOCHS = 1 << 1, OPT_ITERS = 1 << 2, OPT_BATCH = 1 << 3,
       OPT_LR = 1 << 4, OPT_EVERY = 1 << 5, OPT_QUIET = 1 << 6, OPT_DATA = 1 << 7,
       OPT_TESTN = 1 << 8, OPT_MODEL = 1 << 9, OPT_SEED = 1 << 10, OPT_PEERS = 1 << 11,
       OPT_PORT = 1 << 12, OPT_TIMEOUT = 1 << 13, OPT_PLAIN = 1 << 14, OPT_NOTWIN = 1 << 15,
       OPT_LRSTEP = 1 << 16, OPT_KEYS = 1 << 17, OPT_INSECURE = 1 << 18, OPT_CKPT = 1 << 19,
       OPT_RESUME = 1 << 20, OPT_OWNERWAIT = 1 << 21,
       OPT_KEYSEED = 1 << 22, OPT_REPS = 1 << 23, OPT_CSV = 1 << 24, OPT_LATENCY = 1 << 25,
       OPT_BANDWIDTH = 1 << 26, OPT_PREDICT = 1 << 27, OPT_NOSAVE = 1 << 28,
       OPT_TRANSCRIPT = 1 << 29, OPT_LOCAL = 1 << 30 };

typedef struct {
    const char *cmd;
    unsigned    given;                 /* OPT_ bits seen */
    int         party_id;
    int         net;
    uint64_t    epochs, iters, batch, lr_shift, lr_step, every, test_n, seed, key_seed, port, timeout, owner_wait;
    uint64_t    reps, latency, bandwidth, ckpt_every;
    const char *data, *model, *keys, *predictions, *transcript, *resume;
    char        peers[SNN_NPARTY][128];
    int         nnames;                /* bench: row filters */
    const char *names[32];
} opts;

typedef struct {
    char     name[16];                 /* an array: the table stays in .rodata */
    unsigned bit;
    int      arg;                      /* takes a value */
} opt_def;

static const opt_def opt_table[] = {
    { "--net", OPT_NET, 1 },         { "--epochs", OPT_EPOCHS, 1 }, { "--iters", OPT_ITERS, 1 },
    { "--batch", OPT_BATCH, 1 },     { "--lr-shift", OPT_LR, 1 },   { "--every", OPT_EVERY, 1 },
    { "--quiet", OPT_QUIET, 0 },     { "--data", OPT_DATA, 1 },     { "--test-n", OPT_TESTN, 1 },
    { "--model", OPT_MODEL, 1 },     { "--seed", OPT_SEED, 1 },     { "--peers", OPT_PEERS, 1 },
    { "--port", OPT_PORT, 1 },       { "--timeout", OPT_TIMEOUT, 1 }, { "--plain", OPT_PLAIN, 0 },
    { "--no-twin", OPT_NOTWIN, 0 },  { "--lr-step", OPT_LRSTEP, 1 }, { "--keys", OPT_KEYS, 1 },
    { "--insecure", OPT_INSECURE, 0 },
    { "--owner-wait", OPT_OWNERWAIT, 1 }, { "--predictions", OPT_PREDICT, 1 }, { "--no-save", OPT_NOSAVE, 0 },
    { "--local", OPT_LOCAL, 0 },
    { "--key-seed", OPT_KEYSEED, 1 }, { "--reps", OPT_REPS, 1 },  { "--csv", OPT_CSV, 0 },
    { "--latency", OPT_LATENCY, 1 }, { "--bandwidth", OPT_BANDWIDTH, 1 },
    { "--transcript", OPT_TRANSCRIPT, 1 }, { "--checkpoint", OPT_CKPT, 1 }, { "--resume", OPT_RESUME, 1 },
};

#define OPTS_TRAINING (OPT_NET | OPT_EPOCHS | OPT_ITERS | OPT_BATCH | OPT_LR | OPT_LRSTEP | OPT_EVERY | OPT_QUIET \
                       | OPT_DATA | OPT_MODEL | OPT_SEED | OPT_KEYSEED | OPT_TIMEOUT | OPT_CKPT | OPT_RESUME)

#define OPTS_WAN (OPT_LATENCY | OPT_BANDWIDTH)

/* The options each command accepts (its row in the command table). */
#define OPTS_DEMO (OPTS_TRAINING | OPT_TESTN | OPT_PORT | OPT_PLAIN | OPT_NOTWIN | OPT_KEYS | OPTS_WAN | OPT_PREDICT \
                   | OPT_TRANSCRIPT)
#define OPTS_PARTY (OPT_PEERS | OPT_TIMEOUT | OPT_KEYSEED | OPT_KEYS | OPT_INSECURE | OPT_QUIET | OPT_OWNERWAIT \
                    | OPTS_WAN | OPT_TRANSCRIPT)
#define OPTS_TRAIN (OPTS_TRAINING | OPT_PEERS | OPT_KEYS | OPT_INSECURE | OPTS_WAN | OPT_NOSAVE | OPT_TRANSCRIPT)
#define OPTS_INFER (OPT_NET | OPT_BATCH | OPT_DATA | OPT_TESTN | OPT_MODEL | OPT_KEYSEED | OPT_PEERS | OPT_TIMEOUT \
                    | OPT_KEYS | OPT_INSECURE | OPTS_WAN | OPT_PREDICT | OPT_TRANSCRIPT | OPT_LOCAL | OPT_PORT)
#define OPTS_BENCH (OPT_PORT | OPT_KEYSEED | OPT_TIMEOUT | OPT_REPS | OPT_CSV | OPTS_WAN | OPT_TRANSCRIPT)
#define OPTS_IMPORT (OPT_NET | OPT_MODEL)
#define OPTS_EXPLAIN (OPT_KEYSEED | OPT_TIMEOUT)

/* Strict decimal in [lo, hi]. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t v = 0;
    const char *c = s;
    if (*c == '\0') return -1;
    for (; *c; c++) {
        if (*c < '0' || *c > '9') return -1;
        if (v > (UINT64_MAX - (uint64_t)(*c - '0')) / 10) return -1;
        v = v * 10 + (uint64_t)(*c - '0');
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* "h0:p0,h1:p1,h2:p2" into three "host:port" strings; every port a
 * decimal number in 1..65535. */
static int parse_peers(const char *s, char peers[SNN_NPARTY][128])
{
    size_t k;
    uint64_t port;
    for (k = 0; k < SNN_NPARTY; k++) {
        const char *end = strchr(s, ','), *colon;
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if ((k < SNN_NPARTY - 1) != (end != NULL) || len == 0 || len >= 128) return -1;
        memcpy(peers[k], s, len);
        peers[k][len] = '\0';
        colon = strrchr(peers[k], ':');
        if (!colon || colon == peers[k] || parse_u64(colon + 1, 1, 65535, &port) != 0) return -1;
        s = end ? end + 1 : s + len;
    }
    return 0;
}

/* The one-line error for a bad option value. */
static int bad_value(const char *flag, const char *v, const char *want)
{
    PERR("bad value for %s: '%s' (%s)", flag, v, want);
    return -1;
}

/* getaddrinfo of host:port ([v6]:port) for a stream socket; 0, or -1 if it
 * does not parse or resolve (the caller decides what that means). */
static int resolve_hostport(const char *hostport, struct addrinfo **res)
{
    char host[128];
    const char *h = hostport, *end;
    struct addrinfo hints;
    size_t len;
    if (h[0] == '[') {
        end = strchr(h, ']');
        h++;
        if (end && end[1] != ':') return -1;                  /* [v6] then :port, nothing between */
    } else {
        end = strrchr(h, ':');
    }
    if (!end || end <= h || (size_t)(end - h) >= sizeof host) return -1;
    len = (size_t)(end - h);
    memcpy(host, h, len);
    host[len] = '\0';
    end = strrchr(end, ':');
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    return end && getaddrinfo(host, end + 1, &hints, res) == 0 ? 0 : -1;
}

/* Whether two host:port addresses resolve to a common address and port
 * (localhost:7000 and 127.0.0.1:7000 do); 0 if either does not resolve.
 * Addresses are compared as given: an IPv4-mapped IPv6 address and its
 * IPv4 form, or a wildcard and a specific address, count as different. */
static int peers_overlap(const char *a, const char *b)
{
    struct addrinfo *ra, *rb, *x, *y;
    int same = 0;
    if (resolve_hostport(a, &ra) != 0) return 0;
    if (resolve_hostport(b, &rb) != 0) { freeaddrinfo(ra); return 0; }
    for (x = ra; x && !same; x = x->ai_next)
        for (y = rb; y && !same; y = y->ai_next)
            same = x->ai_family == y->ai_family && x->ai_addrlen == y->ai_addrlen
                   && memcmp(x->ai_addr, y->ai_addr, x->ai_addrlen) == 0;
    freeaddrinfo(ra);
    freeaddrinfo(rb);
    return same;
}

/* Parses argv[first..] into o; a one-line error and -1 on any problem. */
/* Option a (its bit) with value v (NULL for a flag) into o: 0, or -1 with
 * the bad value reported. */
static int set_opt(opts *o, unsigned bit, const char *a, const char *v)
{
    switch (bit) {
    case OPT_NET:
        if ((o->net = snn_net_parse(v)) < 0) return bad_value(a, v, "A, B, C or D");
        break;
    case OPT_EPOCHS:
        if (parse_u64(v, 1, 100000, &o->epochs) != 0) return bad_value(a, v, "1..100000");
        break;
    case OPT_ITERS:
        if (parse_u64(v, 1, NN_MAX_ITERS, &o->iters) != 0) return bad_value(a, v, "1..10000000");
        break;
    case OPT_BATCH:
        if (parse_u64(v, 1, NN_MAX_BATCH, &o->batch) != 0 || (o->batch & (o->batch - 1)) != 0)
            return bad_value(a, v, "a power of two, 1..256");
        break;
    case OPT_LR:
        if (parse_u64(v, 0, NN_MAX_LR_SHIFT, &o->lr_shift) != 0) return bad_value(a, v, "0..30");
        break;
    case OPT_LRSTEP:
        if (parse_u64(v, 0, NN_MAX_ITERS, &o->lr_step) != 0) return bad_value(a, v, "0..10000000");
        break;
    case OPT_EVERY:
        if (parse_u64(v, 1, NN_MAX_ITERS, &o->every) != 0) return bad_value(a, v, "1..10000000");
        break;
    case OPT_TESTN:
        if (parse_u64(v, 1, NN_MAX_ITERS, &o->test_n) != 0) return bad_value(a, v, "1..10000000");
        break;
    case OPT_SEED:
        if (parse_u64(v, 0, UINT64_MAX, &o->seed) != 0) return bad_value(a, v, "a decimal integer");
        break;
    case OPT_KEYSEED:
        if (parse_u64(v, 0, UINT64_MAX, &o->key_seed) != 0) return bad_value(a, v, "a decimal integer");
        break;
    case OPT_PORT:
        if (parse_u64(v, 1, 65533, &o->port) != 0) return bad_value(a, v, "1..65533");
        break;
    case OPT_TIMEOUT:
        if (parse_u64(v, 1, 86400, &o->timeout) != 0) return bad_value(a, v, "1..86400 seconds");
        break;
    case OPT_OWNERWAIT:
        if (parse_u64(v, 0, 86400, &o->owner_wait) != 0) return bad_value(a, v, "0..86400 seconds, 0: no limit");
        break;
    case OPT_PEERS: {
        size_t pa, pb;
        if (parse_peers(v, o->peers) != 0) return bad_value(a, v, "h0:p0,h1:p1,h2:p2, ports 1..65535");
        for (pa = 0; pa < SNN_NPARTY; pa++)     /* each party listens on its own address */
            for (pb = pa + 1; pb < SNN_NPARTY; pb++)
                if (strcmp(o->peers[pa], o->peers[pb]) == 0) {
                    PERR("bad value for %s: '%s' (%s is given for both P%zu and P%zu; each party needs an "
                         "address of its own)", a, v, o->peers[pa], pa, pb);
                    return -1;
                } else if (peers_overlap(o->peers[pa], o->peers[pb])) {
                    PERR("bad value for %s: '%s' (%s and %s, given for P%zu and P%zu, are the same address; "
                         "each party needs an address of its own)", a, v, o->peers[pa], o->peers[pb], pa, pb);
                    return -1;
                }
        break;
    }
    case OPT_REPS:
        if (parse_u64(v, 1, 1000, &o->reps) != 0) return bad_value(a, v, "1..1000");
        break;
    case OPT_LATENCY:
        if (parse_u64(v, 0, 10000, &o->latency) != 0) return bad_value(a, v, "0..10000 milliseconds");
        break;
    case OPT_BANDWIDTH:
        if (parse_u64(v, 0, 100000, &o->bandwidth) != 0)
            return bad_value(a, v, "0..100000 MB/s (0: unlimited)");
        break;
    case OPT_CKPT:
        if (parse_u64(v, 1, NN_MAX_ITERS, &o->ckpt_every) != 0) return bad_value(a, v, "1..10000000");
        break;
    case OPT_RESUME: o->resume = v; break;
    case OPT_DATA:  o->data = v; break;
    case OPT_KEYS:  o->keys = v; break;
    case OPT_TRANSCRIPT: o->transcript = v; break;
    case OPT_MODEL: o->model = v; break;
    case OPT_PREDICT: o->predictions = v; break;
    default: break;               /* the flags without a value */
    }
    return 0;
}

/*
 * parse_opts -- argv[first..] into o: the options `allowed` (the command's
 * row), each checked as it is read; with `names`, words that are not
 * options are the row names of bench.  0, or -1 with the error printed.
 */
static int parse_opts(opts *o, int argc, char **argv, int first, unsigned allowed, int names)
{
    const size_t nopt = sizeof opt_table / sizeof opt_table[0];
    int i;
    size_t t, k;
    for (i = first; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        for (t = 0; t < nopt; t++)
            if (strcmp(a, opt_table[t].name) == 0) break;
        if (t == nopt && names && a[0] != '-') {
            /* bench NAME...: the rows to run */
            if (o->nnames == (int)(sizeof o->names / sizeof o->names[0])) {
                PERR("bench: at most %d row names", o->nnames);
                return -1;
            }
            o->names[o->nnames++] = a;
            continue;
        }
        if (t == nopt) {
            PERR("%s: unknown option '%s' (see securenn --help)", o->cmd, a);
            return -1;
        }
        if (!(allowed & opt_table[t].bit)) {
            PERR("%s: option %s does not apply to this command (see securenn --help)", o->cmd, a);
            return -1;
        }
        if (opt_table[t].arg) {
            if (i + 1 >= argc) {
                PERR("%s: option %s needs a value", o->cmd, a);
                return -1;
            }
            v = argv[++i];
        }
        o->given |= opt_table[t].bit;
        if (set_opt(o, opt_table[t].bit, a, v) != 0) return -1;
    }
    if ((o->given & OPT_KEYS) && (o->given & OPT_INSECURE)) {
        PERR("%s: --keys seals every channel; --insecure is for running without keys", o->cmd);
        return -1;
    }
    if (!(o->given & OPT_PEERS))
        for (k = 0; k < SNN_NPARTY; k++)
            snprintf(o->peers[k], sizeof o->peers[k], "127.0.0.1:%u", (unsigned)(o->port + k));
    return 0;
}

/* ---- 16b. Shared by the commands: display, seeds, plans, the owner's job - */

/* Whether a names b in any case: protocol and row names (explain, bench). */
static int name_is(const char *a, const char *b)
{
    while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) { a++; b++; }
    return !*a && !*b;
}

/* Monotonic seconds, for display only. */
static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Bytes for display: "12.3 MB". */
static void fmt_bytes(char *buf, size_t n, double b)
{
    if (b >= 1e9) snprintf(buf, n, "%.2f GB", b / 1e9);
    else if (b >= 1e6) snprintf(buf, n, "%.2f MB", b / 1e6);
    else if (b >= 1e3) snprintf(buf, n, "%.1f kB", b / 1e3);
    else snprintf(buf, n, "%.0f B", b);
}

/* The owner's streams from its seed: stream 1 the initial weights,
 * stream 2 the batch order, stream 3 the twin's SGD rounding. */
static void owner_prg(snn_prg *g, uint64_t seed, uint32_t stream)
{
    uint8_t key[32];
    snn_seed_key(key, seed, "SNN-owner-model");
    snn_prg_init(g, key, stream);
    snn_wipe(key, sizeof key);
}

/* A seed from the operating system (when --seed is absent). */
static int os_seed(uint64_t *seed)
{
    uint8_t b[8];
    if (snn_os_random(b, sizeof b) != 0) return -1;
    *seed = snn_load64_le(b);
    snn_wipe(b, sizeof b);
    return 0;
}

typedef struct {
    double t0;
    int    secure;
    double infer_t0;          /* when secure inference started            */
    size_t last_tenth;        /* of the images, at the last progress line */
} prog_progress;

/* One progress line: loss = mean of sum_k (q_k - y_k)^2 per sample. */
static void print_progress(void *ctx, const snn_progress *pr)
{
    const prog_progress *c = ctx;
    double loss = pr->seen ? (double)pr->sqerr / (double)pr->seen / (double)((uint64_t)1 << (2 * F)) : 0.0;
    double acc = pr->seen ? 100.0 * (double)pr->correct / (double)pr->seen : 0.0;
    char b[32];
    printf("  iter %6zu/%-6zu loss %.4f  running acc %5.1f%%", pr->iter, pr->iters, loss, acc);
    if (c->secure) {
        fmt_bytes(b, sizeof b, (double)pr->bytes);
        printf("  traffic %10s", b);
    }
    printf("  %7.1f s", now_s() - c->t0);
    if (pr->iter < pr->iters && pr->iter > pr->start)
        printf(", about %.0f s left", (now_s() - c->t0) / (double)(pr->iter - pr->start)
                                      * (double)(pr->iters - pr->iter));
    printf("\n");
    fflush(stdout);
}

/* Secure inference's progress: a line at each tenth of the images (and at
 * the end), with the time so far and an estimate of the time left. */
static void print_infer_progress(void *ctx, size_t done, size_t n)
{
    prog_progress *c = ctx;
    double t;
    if (done == 0) {                  /* inference starts */
        c->infer_t0 = now_s();
        c->last_tenth = 0;
        return;
    }
    if (done * 10 / n == c->last_tenth && done < n) return;
    c->last_tenth = done * 10 / n;
    t = now_s() - c->infer_t0;
    printf("  classified %zu of %zu images  %.1f s", done, n, t);
    if (done < n) printf(", about %.0f s left", t / (double)done * (double)(n - done));
    printf("\n");
    fflush(stdout);
}

/* A few test digits as ASCII art, three to a row, with the predictions. */
static void draw_digits(const snn_mnist *d, const uint64_t *pred, size_t count)
{
    static const char ramp[] = " .:-=+*#%@";
    size_t first, i, r, c;
    for (first = 0; first < count; first += 3) {
        size_t n = count - first < 3 ? count - first : 3;
        for (r = 0; r < 28; r += 2) {
            fputs("  ", stdout);
            for (i = first; i < first + n; i++) {
                const uint8_t *px = d->images + i * SNN_NN_IN;
                for (c = 0; c < 28; c++) {
                    unsigned v = ((unsigned)px[r * 28 + c] + px[(r + 1) * 28 + c]) / 2;
                    putchar(ramp[v * 10 / 256]);
                }
                fputs("    ", stdout);
            }
            putchar('\n');
        }
        fputs("  ", stdout);
        for (i = first; i < first + n; i++)
            printf("predicted %u (label %u)%-8s", (unsigned)pred[i], (unsigned)d->labels[i], "");
        printf("\n\n");
    }
}

/* --predictions FILE: opened before the job starts, so that a path that
 * cannot be written stops the command at once.  NULL (and no error) if
 * the option is absent. */
static int open_predictions(const opts *o, FILE **f)
{
    *f = NULL;
    if (!o->predictions) return 0;
    if (!(*f = fopen_private(o->predictions, "w"))) {
        PERR("--predictions %s: cannot create: %s", o->predictions, strerror(errno));
        return -1;
    }
    return 0;
}

/* Writes "index label predicted" per image to f (if any), closes it, and
 * prints the confusion matrix (rows: label, columns: predicted) with each
 * class's accuracy.  0, or -1 if the file could not be written. */
static int report_predictions(const opts *o, FILE *f, const snn_mnist *d, const uint64_t *pred, size_t n)
{
    size_t cm[SNN_NN_OUT][SNN_NN_OUT], i, r, c;
    int rc = 0;
    memset(cm, 0, sizeof cm);
    for (i = 0; i < n; i++) {
        cm[d->labels[i]][pred[i]]++;
        if (f) fprintf(f, "%zu %u %u\n", i, (unsigned)d->labels[i], (unsigned)pred[i]);
    }
    if (f) {
        int bad = ferror(f);
        if (fclose(f) != 0 || bad) {
            PERR("--predictions %s: write failed", o->predictions);
            rc = -1;
        }
    }
    if (f && rc == 0) printf("predictions written to %s (index label predicted)\n", o->predictions);
    printf("confusion matrix (rows: label, columns: predicted) and accuracy per class:\n      ");
    for (c = 0; c < SNN_NN_OUT; c++) printf(" %5zu", c);
    printf("   accuracy\n");
    for (r = 0; r < SNN_NN_OUT; r++) {
        size_t row = 0;
        printf("  %3zu ", r);
        for (c = 0; c < SNN_NN_OUT; c++) { printf(" %5zu", cm[r][c]); row += cm[r][c]; }
        if (row) printf("   %6.2f%% (%zu/%zu)\n", 100.0 * (double)cm[r][r] / (double)row, cm[r][r], row);
        else printf("   (none)\n");
    }
    return rc;
}

/* Predictions equal to the labels. */
static size_t count_correct(const uint64_t *pred, const snn_mnist *d, size_t n)
{
    size_t i, c = 0;
    for (i = 0; i < n; i++) c += pred[i] == d->labels[i];
    return c;
}

/* The job as one line: "train network A, batch 128, 7020 iterations, ...". */
static void job_text(char *buf, size_t n, const snn_job *j)
{
    size_t len = 0;
    buf[0] = '\0';
    if (j->cmd & SNN_JOB_TRAIN) {
        len += (size_t)snprintf(buf, n, "train network %s, batch %u, %u iterations, learning rate 2^-%u",
                                snn_net_name((int)j->net), (unsigned)j->batch, (unsigned)j->iters,
                                (unsigned)j->lr_shift);
        if (len < n && j->lr_step)
            len += (size_t)snprintf(buf + len, n - len, " halved every %u iterations", (unsigned)j->lr_step);
        if (len < n && j->report)
            len += (size_t)snprintf(buf + len, n - len, ", progress to the owner every %u", (unsigned)j->report);
        if (len < n && j->checkpoint)
            len += (size_t)snprintf(buf + len, n - len, ", weights to the owner every %u", (unsigned)j->checkpoint);
        if (len < n && j->start)
            len += (size_t)snprintf(buf + len, n - len, ", resumed at iteration %u", (unsigned)j->start + 1);
    }
    if (len < n && (j->cmd & SNN_JOB_INFER))
        snprintf(buf + len, n - len, "%sclassify %u images with network %s, batch %u",
                 len ? "; then " : "", (unsigned)j->n_infer, snn_net_name((int)j->net), (unsigned)j->batch);
}

/* A party's end-of-job summary, two lines: totals, then per protocol
 * (payload bytes sent/received, as [SNN, Table 1] counts them). */
static void party_summary(const snn_party *p, double secs)
{
    char b1[32], b2[32], line[1024];
    size_t len = 0;
    int k;
    fmt_bytes(b1, sizeof b1, (double)p->net.stats.bytes_sent);
    fmt_bytes(b2, sizeof b2, (double)p->net.stats.bytes_recv);
    printf("%s: job done in %.1f s: sent %s, received %s in %u rounds (%llu frames sent, %llu received)\n",
           snn_endpoint_name(p->id), secs, b1, b2, (unsigned)p->net.stats.rounds,
           (unsigned long long)p->net.stats.msgs_sent, (unsigned long long)p->net.stats.msgs_recv);
    line[0] = '\0';
    for (k = 0; k < SNN_PROTO_COUNT && len < sizeof line; k++) {
        if (!p->net.stats.sent[k] && !p->net.stats.recv[k]) continue;
        fmt_bytes(b1, sizeof b1, (double)p->net.stats.sent[k]);
        fmt_bytes(b2, sizeof b2, (double)p->net.stats.recv[k]);
        len += (size_t)snprintf(line + len, sizeof line - len, "%s%s %s/%s", len ? ", " : "",
                                snn_proto_name(k), b1, b2);
    }
    printf("%s: sent/received by protocol: %s\n", snn_endpoint_name(p->id), line);
    printf("%s: exiting (start it again for another job)\n", snn_endpoint_name(p->id));
}

/* The seed of this party's keys and share masks: --key-seed, or NULL for
 * the operating system.  Never --seed, which is the owner's and public. */
static const uint64_t *key_seed(const opts *o)
{
    return (o->given & OPT_KEYSEED) ? &o->key_seed : NULL;
}

/* Whether host:port ([v6]:port) names only loopback addresses. */
static int peer_is_loopback(const char *hostport)
{
    struct addrinfo *res, *ai;
    int ok = 1;
    if (resolve_hostport(hostport, &res) != 0) return 0;
    for (ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            const struct sockaddr_in *a4 = (const struct sockaddr_in *)(const void *)ai->ai_addr;
            if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127) ok = 0;
        } else if (ai->ai_family == AF_INET6) {
            const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)(const void *)ai->ai_addr;
            if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr)) ok = 0;
        } else {
            ok = 0;
        }
    }
    freeaddrinfo(res);
    return ok;
}

/* --key-seed makes every key public to whoever knows the number: refused
 * unless every peer is on this machine (loopback).  0, or -1 and an error. */
static int key_seed_check(const opts *o)
{
    size_t k;
    if (!(o->given & OPT_KEYSEED)) return 0;
    for (k = 0; k < SNN_NPARTY; k++)
        if (!peer_is_loopback(o->peers[k])) {
            PERR("--key-seed derives every key from one number, for tests on one machine only: "
                 "P%zu's address %s is not a loopback address", k, o->peers[k]);
            return -1;
        }
    return 0;
}

/* Without --keys or --insecure a party talks only to loopback peers (the
 * channel would be in the clear): a peer of the list that is not, other
 * than the party itself (id; SNN_CLIENT for the owner), is refused before
 * anything listens or connects.  0, or -1 with p->err set. */
static int policy_precheck(snn_party *p, const opts *o)
{
    size_t k;
    if (o->given & (OPT_KEYS | OPT_INSECURE)) return 0;
    for (k = 0; k < SNN_NPARTY; k++)
        if ((int)k != p->id && !peer_is_loopback(o->peers[k]))
            return snn_fail(p, SNN_ERR_ARG, "refusing %s at %s: not a loopback address, and without keys the "
                            "channel would be in the clear (give every party --keys DIR, or --insecure)",
                            snn_endpoint_name((int)k), o->peers[k]);
    return 0;
}

/*
 * channel_setup -- --keys: load this party's channel keys (before any
 * connection, so a bad key file stops it at once); --insecure: allow peers
 * off loopback in the clear, and say so once.
 */
static int channel_setup(snn_party *p, const opts *o)
{
    if (o->given & OPT_KEYS) return snn_load_keys(p, o->keys);
    if (o->given & OPT_INSECURE) {
        p->net.insecure = 1;
        PERR("%s: --insecure: channels are neither encrypted nor authenticated, and peers off loopback "
             "are allowed", snn_endpoint_name(p->id));
    }
    return 0;
}

/* --transcript DIR: this party's view into DIR/P<id>.log (owner:
 * owner.log), installed right after snn_party_init so that it sees every
 * frame.  Without the option t stays closed.  0, or -1 with p->err set. */
static int transcript_start(snn_transcript *t, snn_party *p, const opts *o, int append)
{
    char path[4096], err[4200];
    memset(t, 0, sizeof *t);
    if (!(o->given & OPT_TRANSCRIPT)) return 0;
    if (p->id == SNN_CLIENT) snprintf(path, sizeof path, "%s/owner.log", o->transcript);
    else snprintf(path, sizeof path, "%s/P%d.log", o->transcript, p->id);
    if (snn_transcript_open(t, p, path, append, err, sizeof err) != 0) return snn_fail(p, SNN_ERR_IO, "%s", err);
    return 0;
}

/* Ends the transcript (its totals); 0, or -1 with the error printed. */
static int transcript_end(snn_transcript *t)
{
    char err[256];
    if (snn_transcript_close(t, err, sizeof err) == 0) return 0;
    PERR("%s", err);
    return -1;
}

/* party's entry in the command list (and party --help). */
static const char help_party[] =
"  party ID        run server ID (0, 1 or 2): connect the server mesh, set up\n"
"                  keys, wait for the owner and run its job\n";

/*
 * run_party -- the `party` command: server id listens, connects the mesh,
 * sets up keys, tells ready_fd (the demo's parent; -1: nobody) that it is
 * listening for the owner, waits for the owner (--owner-wait; default no
 * bound), receives its job and serves it, then exits.  Unless --quiet (or
 * under the demo) it says so on stdout at each stage and ends with a
 * summary; errors are one line on stderr.
 */
static int run_party(int id, const opts *o, int ready_fd)
{
    snn_party p;
    snn_transcript tr;
    snn_job job;
    const char *peers[SNN_NPARTY];
    const char *me = snn_endpoint_name(id);
    size_t k;
    int rc = 1, reported = 0, talk = ready_fd < 0 && !(o->given & OPT_QUIET);
    /* the demo's owner is this process's parent: it comes at once */
    unsigned wait_s = (unsigned)(ready_fd >= 0 ? o->timeout : o->owner_wait);
    double t0;
    char line[512];

    for (k = 0; k < SNN_NPARTY; k++) peers[k] = o->peers[k];
    snn_party_init(&p, id, (int)o->timeout * 1000);
    snn_set_wan(&p, (unsigned)o->latency, (unsigned)o->bandwidth);
    if (transcript_start(&tr, &p, o, 0) != 0 || channel_setup(&p, o) != 0 || policy_precheck(&p, o) != 0
        || snn_listen(&p, peers[id]) != 0)
        goto cleanup;
    if (talk) {
        int a = id == 0 ? 1 : 0, b = id == 2 ? 1 : 2;
        printf("%s: listening on %s; peers %s at %s, %s at %s (waiting up to %u s for each); channels %s%s\n",
               me, peers[id], snn_endpoint_name(a), peers[a], snn_endpoint_name(b), peers[b], (unsigned)o->timeout,
               o->keys ? "sealed with the keys in " : "in the clear (no --keys)", o->keys ? o->keys : "");
        fflush(stdout);
    }
    if (snn_connect_tcp(&p, peers) != 0 || snn_setup_keys(&p, key_seed(o)) != 0)
        goto cleanup;
    if (ready_fd >= 0) {
        char one = 1;
        (void)(write(ready_fd, &one, 1) == 1);
        close(ready_fd);
        ready_fd = -1;
    }
    if (talk) {
        printf("%s: connected to %s, %s; keys set; waiting for the owner on %s (", me,
               snn_endpoint_name(id == 0 ? 1 : 0), snn_endpoint_name(id == 2 ? 1 : 2), peers[id]);
        if (wait_s) printf("up to %u s, --owner-wait)\n", wait_s);
        else printf("no time limit; Ctrl-C stops)\n");
        fflush(stdout);
    }
    if (snn_accept_owner(&p, (int)wait_s * 1000) != 0) {
        if (p.err == SNN_ERR_TIMEOUT) {
            PERR("%s; start it with: securenn train (or infer --model FILE) --peers %s,%s,%s%s%s%s", p.errmsg,
                 peers[0], peers[1], peers[2], o->keys ? " --keys " : "", o->keys ? o->keys : "",
                 (o->given & OPT_INSECURE) ? " --insecure" : "");
            reported = 1;
        }
        goto cleanup;
    }
    if (snn_nn_recv_job(&p, &job) != 0) goto cleanup;
    t0 = now_s();
    if (talk) {
        job_text(line, sizeof line, &job);
        printf("%s: job accepted: %s\n", me, line);
        fflush(stdout);
    }
    if (snn_nn_run_job(&p, &job) != 0) goto cleanup;
    if (talk) party_summary(&p, now_s() - t0);
    rc = 0;
cleanup:
    if (rc != 0 && ready_fd >= 0) {
        /* the demo's parent says why this party could not start */
        unsigned char rec[2 + sizeof p.errmsg];
        size_t n = strlen(p.errmsg);
        if (n > 255) n = 255;
        rec[0] = 0;
        rec[1] = (unsigned char)n;
        memcpy(rec + 2, p.errmsg, n);
        if (write(ready_fd, rec, 2 + n) == (ssize_t)(2 + n)) reported = 1;
        close(ready_fd);
    }
    if (rc != 0 && p.err && !reported) PERR("%s", p.errmsg);
    if (transcript_end(&tr) != 0) rc = 1;
    snn_party_close(&p);
    return rc;
}

/* cmd_party -- the `party ID` command: run_party, nobody to tell. */
static int cmd_party(opts *o, int nop, char **op)
{
    (void)nop;
    (void)op;
    return run_party(o->party_id, o, -1);
}

/* Hyperparameters as resolved from the options and the defaults, and
 * the run's checkpoints (plan_checkpoint) and where it resumes. */
typedef struct {
    snn_net  net;
    size_t   batch, iters, every, test_n, lr_step;
    unsigned lr_shift;
    uint64_t seed;
    size_t   ckpt_every;        /* --checkpoint; 0: none                   */
    char     ckpt_path[1024];   /* --model with ".ckpt" appended            */
    snn_ckpt_file resume;       /* --resume: the checkpoint (param NULL if not) */
} plan;

/* The twin's training run of plan pl: a new run, no progress, no
 * checkpoints (the caller adds them). */
static void plan_train_cfg(snn_train_cfg *cfg, const plan *pl, snn_prg *order, snn_prg *round)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->batch = pl->batch;
    cfg->iters = pl->iters;
    cfg->lr_shift = pl->lr_shift;
    cfg->lr_step = pl->lr_step;
    cfg->order = order;
    cfg->round = round;
}

/*
 * load_resume -- --resume FILE: the checkpoint into c, checked against the
 * options (none may change the run's batch, schedule or seed; --net, if
 * given, must be its network) and against the training set (the same
 * images, by count and labels).  0, or -1 with the one-line error printed.
 */
static int load_resume(snn_ckpt_file *c, const opts *o, const snn_mnist *train)
{
    static const struct { unsigned bit; char name[12]; } fixed[] = {   /* arrays: the table stays in .rodata */
        { OPT_BATCH, "--batch" }, { OPT_LR, "--lr-shift" }, { OPT_LRSTEP, "--lr-step" }, { OPT_SEED, "--seed" },
    };
    char err[256];
    size_t k;
    for (k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
        if (o->given & fixed[k].bit) {
            PERR("%s: --resume continues the checkpoint's run with its own batch, schedule and seed; %s does not "
                 "apply", o->cmd, fixed[k].name);
            return -1;
        }
    if (snn_ckpt_load(c, o->resume, err, sizeof err) != 0) {
        PERR("--resume %s", err);
        return -1;
    }
    if ((o->given & OPT_NET) && o->net != c->net) {
        PERR("--resume %s: a checkpoint of network %s, not %s", o->resume, snn_net_name(c->net),
             snn_net_name(o->net));
        return -1;
    }
    if (c->data_n != train->n || c->data_hash != snn_labels_hash(train)) {
        PERR("--resume %s: saved while training on another set (%llu images); give the same --data",
             o->resume, (unsigned long long)c->data_n);
        return -1;
    }
    return 0;
}

/* Fills the plan; the training split is known (ntrain) if training.  With
 * resume (a loaded checkpoint, which the plan takes over: freed with it by
 * snn_ckpt_free(&pl->resume)), the network, batch, schedule and seed are
 * the checkpoint's, and --iters or --epochs may only extend the run. */
static int make_plan(plan *pl, const opts *o, size_t ntrain, int demo, snn_ckpt_file *resume)
{
    size_t per_epoch, epochs;
    const int id = resume ? resume->net : o->net;
    memset(pl, 0, sizeof *pl);
    if (resume) {
        pl->resume = *resume;
        memset(resume, 0, sizeof *resume);
        resume = &pl->resume;
    }
    snn_net_init(&pl->net, id);
    /* train: [SNN]'s values, batch 128, 2^-7 for A and 2^-5 otherwise, A
     * 15 epochs and B, C 5.  The demo's defaults, chosen with the twin on
     * the official 60,000/10,000 (README, accuracy table):
     *   A: one epoch at batch 64, 2^-3 halved after half the run (96.1%
     *      on two seeds; batch 128 at 2^-3 gives 95.3-96.0%), a few
     *      minutes securely;
     *   B, C securely: one epoch at batch 128 and 2^-4 (B 97.4%);
     *   B, C, D in the clear (--plain; D always): two epochs at batch 16
     *      and 2^-5 (B 98.8%, C 99.2%). */
    if (!demo) {
        pl->batch = 128;
        pl->lr_shift = id == SNN_NET_A ? 7u : 5u;
        epochs = id == SNN_NET_A ? 15 : 5;
    } else if (id == SNN_NET_A) {
        pl->batch = 64;
        pl->lr_shift = 3;
        epochs = 1;
    } else if ((o->given & OPT_PLAIN) || id == SNN_NET_D) {
        pl->batch = 16;
        pl->lr_shift = 5;
        epochs = 2;
    } else {
        pl->batch = 128;
        pl->lr_shift = 4;
        epochs = 1;
    }
    if (o->given & OPT_BATCH) pl->batch = (size_t)o->batch;
    if (o->given & OPT_LR) pl->lr_shift = (unsigned)o->lr_shift;
    if (o->given & OPT_EPOCHS) epochs = (size_t)o->epochs;
    if (resume) {
        pl->batch = resume->batch;
        pl->lr_shift = resume->lr_shift;
    }
    per_epoch = ntrain / pl->batch;
    if (ntrain && per_epoch == 0) {
        PERR("batch %zu is larger than the %zu training images", pl->batch, ntrain);
        return -1;
    }
    pl->iters = (o->given & OPT_ITERS) ? (size_t)o->iters
                : (o->given & OPT_EPOCHS) || !resume ? epochs * per_epoch : resume->iters;
    if (pl->iters > NN_MAX_ITERS) {
        PERR("%zu training iterations, at most %u", pl->iters, NN_MAX_ITERS);
        return -1;
    }
    if (resume && pl->iters <= resume->done) {
        PERR("--resume %s: %zu iterations are done already; --iters or --epochs must give more", o->resume,
             resume->done);
        return -1;
    }
    pl->lr_step = resume ? resume->lr_step
                  : (o->given & OPT_LRSTEP) ? (size_t)o->lr_step
                  : demo && id == SNN_NET_A ? (pl->iters + 1) / 2 : 0;
    if (pl->iters && snn_lr_shift_at(pl->lr_shift, pl->lr_step, pl->iters - 1) > NN_MAX_LR_SHIFT) {
        PERR("--lr-step %zu takes the learning-rate shift past %u in %zu iterations", pl->lr_step,
             NN_MAX_LR_SHIFT, pl->iters);
        return -1;
    }
    pl->every = (o->given & OPT_QUIET) ? 0 : (o->given & OPT_EVERY) ? (size_t)o->every
                : resume && resume->report ? resume->report     /* a resumed run keeps its --every */
                : demo ? (pl->iters + 9) / 10 : per_epoch;      /* the demo: ten reports */
    if (pl->every > pl->iters) pl->every = pl->iters;
    pl->test_n = (size_t)o->test_n;
    if (resume) pl->seed = resume->seed;
    else if (o->given & OPT_SEED) pl->seed = o->seed;
    else if (os_seed(&pl->seed) != 0) {
        PERR("cannot read /dev/urandom for a seed");
        return -1;
    }
    return 0;
}

/*
 * plan_checkpoint -- --checkpoint N: every N iterations the weights go to
 * MODEL.ckpt (so it needs --model, and a network this run trains); a
 * resumed run without --checkpoint keeps its checkpoint's period (if it
 * has --model and a checkpoint still falls within the run).  The
 * temporary file and the period are checked before the job starts.  0,
 * or -1 with the error printed.
 */
static int plan_checkpoint(plan *pl, const opts *o)
{
    char err[1200];
    size_t first = pl->resume.param ? pl->resume.done : 0, every = (size_t)o->ckpt_every;
    int inherited = !(o->given & OPT_CKPT);
    if (inherited) {
        if (!pl->resume.param || !o->model) return 0;
        every = pl->resume.every;
    }
    if (!o->model) {
        PERR("%s: --checkpoint N saves beside the model: give --model FILE (checkpoints go to FILE.ckpt)", o->cmd);
        return -1;
    }
    if (pl->net.id == SNN_NET_D) {
        PERR("%s: --checkpoint is for networks A, B and C (D is for inference only, trained in the clear in one "
             "go)", o->cmd);
        return -1;
    }
    if (strlen(o->model) + 10 > sizeof pl->ckpt_path) {
        PERR("%s: --model path too long for its checkpoint", o->cmd);
        return -1;
    }
    if (every == 0 || (first / every + 1) * every >= pl->iters) {
        if (inherited) return 0;        /* the run ends before its next checkpoint */
        PERR("%s: --checkpoint %zu: no checkpoint falls within iterations %zu..%zu of this run (they come "
             "after every multiple of N below the last)", o->cmd, every, first + 1, pl->iters);
        return -1;
    }
    /* each checkpoint is written to FILE.ckpt.tmp, then renamed to FILE.ckpt */
    snprintf(pl->ckpt_path, sizeof pl->ckpt_path, "%s.ckpt.tmp", o->model);
    if (snn_model_writable(pl->ckpt_path, err, sizeof err) != 0) {
        PERR("--checkpoint: %s (checkpoints are written there, then renamed; nothing was run)", err);
        return -1;
    }
    snprintf(pl->ckpt_path, sizeof pl->ckpt_path, "%s.ckpt", o->model);
    {   /* the rename's target: absent, or a file it may replace */
        struct stat st;
        if (stat(pl->ckpt_path, &st) == 0 && !S_ISREG(st.st_mode)) {
            PERR("--checkpoint: %s is not a regular file, so a checkpoint cannot replace it (nothing was run)",
                 pl->ckpt_path);
            return -1;
        }
    }
    pl->ckpt_every = every;
    return 0;
}

/* The plan of a training command: --resume's checkpoint, the options and
 * defaults, --checkpoint.  0, or -1 with the error printed (what the plan
 * holds is freed by the caller's snn_ckpt_free(&pl->resume)). */
static int plan_from(plan *pl, const opts *o, const snn_mnist *train, int demo)
{
    snn_ckpt_file c;
    struct stat a, b;
    int rc;
    memset(&c, 0, sizeof c);
    if ((o->given & OPT_RESUME) && o->model && stat(o->resume, &a) == 0 && stat(o->model, &b) == 0
        && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        PERR("%s: --model %s is the checkpoint --resume reads; saving the model there would lose it (nothing "
             "was run)", o->cmd, o->model);
        return -1;
    }
    if ((o->given & OPT_RESUME) && load_resume(&c, o, train) != 0) {
        snn_ckpt_free(&c);
        return -1;
    }
    rc = make_plan(pl, o, train->n, demo, (o->given & OPT_RESUME) ? &c : NULL);
    snn_ckpt_free(&c);                  /* empty unless make_plan failed first */
    return rc != 0 || plan_checkpoint(pl, o) != 0 ? -1 : 0;
}

/* The resumed run, one line (nothing if the run is new). */
static void print_resume(const plan *pl, const char *path)
{
    if (!pl->resume.param) return;
    printf("resuming %s (saved by %s): iteration %zu of %zu done", path,
           pl->resume.secure ? "a secure run" : "the twin", pl->resume.done, pl->iters);
    if (pl->ckpt_every) printf("; checkpoints every %zu iterations to %s\n", pl->ckpt_every, pl->ckpt_path);
    else printf("; no more checkpoints\n");
}

/* What a checkpoint's save needs: the plan and the training set. */
typedef struct {
    const plan      *pl;
    const snn_mnist *train;
    int              secure;
} ckpt_ctx;

/* snn_ckpt_fn for the commands: the checkpoint to pl->ckpt_path. */
static int save_checkpoint(void *ctx, size_t done, const uint64_t *param, const snn_prg *round, char *err,
                           size_t errlen)
{
    const ckpt_ctx *c = ctx;
    snn_ckpt_file f;
    int rc;
    memset(&f, 0, sizeof f);
    f.net = c->pl->net.id;
    f.secure = c->secure;
    f.batch = c->pl->batch;
    f.iters = c->pl->iters;
    f.done = done;
    f.lr_step = c->pl->lr_step;
    f.lr_shift = c->pl->lr_shift;
    f.seed = c->pl->seed;
    f.round_pos = round ? snn_prg_position(round) : 0;
    f.data_n = c->train->n;
    f.data_hash = snn_labels_hash(c->train);
    f.every = c->pl->ckpt_every;
    f.report = c->pl->every;
    f.n = c->pl->net.nparam;
    rc = snn_ckpt_save(c->pl->ckpt_path, &f, param, err, errlen);
    snn_wipe(&f.seed, sizeof f.seed);
    if (rc != 0) return -1;             /* the caller's one line says why */
    printf("  checkpoint: iteration %zu of %zu saved to %s\n", done, c->pl->iters, c->pl->ckpt_path);
    fflush(stdout);
    return 0;
}

/* The paper's accuracy for a network ([SNN, Table 3], batch 128, from
 * cleartext fixed-point training, SPEC 5), for the demo's summary. */
static const char *paper_accuracy(int net)
{
    switch (net) {
    case SNN_NET_A: return "[SNN] Table 3: A 93.4% after 15 epochs (batch 128, 2^-7)";
    case SNN_NET_B: return "[SNN] Table 3: B 97.94% after 5 epochs, 98.77% after 15 (batch 128, 2^-5)";
    case SNN_NET_C: return "[SNN] Table 3: C 98.15% after 5 epochs, 99.15% after 15 (batch 128, 2^-5)";
    default:        return "[SNN]: D is inference only; no accuracy is given";
    }
}

/* "2^-5", or "2^-4 halved every 125 iterations" for a step schedule. */
static const char *lr_text(char *buf, size_t n, const plan *pl)
{
    if (pl->lr_step && pl->lr_step < pl->iters)
        snprintf(buf, n, "2^-%u halved every %zu iterations", pl->lr_shift, pl->lr_step);
    else
        snprintf(buf, n, "2^-%u", pl->lr_shift);
    return buf;
}

/* Loads a split of --data, or prints the loader's one-line error. */
static int load_split(snn_mnist *d, const opts *o, const char *split)
{
    char err[256];
    if (snn_mnist_load(d, o->data, split, err, sizeof err) != 0) {
        PERR("%s", err);
        return -1;
    }
    return 0;
}

/* Saves the owner's model to --model, if given; 0, or -1 with the error. */
static int save_model(const opts *o, int net, const uint64_t *param, size_t n)
{
    char err[256];
    if (!o->model) return 0;
    if (snn_model_save(o->model, net, param, n, err, sizeof err) != 0) {
        PERR("%s", err);
        return -1;
    }
    printf("model saved to %s\n", o->model);
    return 0;
}

/*
 * The owner's job setup that demo and train share: the initial weights
 * from the seed's stream 1 (the owner's, never seen by a server), the
 * batch order from stream 2, and the job block of the plan (cmd SNN_JOB_*;
 * the training fields only if it trains).
 */
static void owner_prepare(const plan *pl, uint32_t cmd, uint64_t *param, snn_prg *order, snn_job *job)
{
    owner_prg(order, pl->seed, 1);
    snn_nn_init_params(&pl->net, param, order);
    if (pl->resume.param) memcpy(param, pl->resume.param, pl->net.nparam * sizeof *param);
    owner_prg(order, pl->seed, 2);
    memset(job, 0, sizeof *job);
    job->cmd = cmd;
    job->net = (uint32_t)pl->net.id;
    job->batch = (uint32_t)pl->batch;
    if (cmd & SNN_JOB_TRAIN) {
        job->iters = (uint32_t)pl->iters;
        job->lr_shift = pl->lr_shift;
        job->lr_step = (uint32_t)pl->lr_step;
        job->report = (uint32_t)pl->every;
        job->start = pl->resume.param ? (uint32_t)pl->resume.done : 0;
        job->checkpoint = (uint32_t)pl->ckpt_every;
    }
    if (cmd & SNN_JOB_INFER) job->n_infer = (uint32_t)pl->test_n;
}

/* The owner's party: connected to P0, P1, P2, private stream set. */
static int owner_connect(snn_party *own, snn_transcript *tr, const opts *o)
{
    const char *peers[SNN_NPARTY];
    size_t k;
    for (k = 0; k < SNN_NPARTY; k++) peers[k] = o->peers[k];
    snn_party_init(own, SNN_CLIENT, (int)o->timeout * 1000);
    snn_set_wan(own, (unsigned)o->latency, (unsigned)o->bandwidth);
    if (transcript_start(tr, own, o, 0) != 0 || channel_setup(own, o) != 0 || policy_precheck(own, o) != 0) {
        PERR("%s", own->errmsg);
        return -1;
    }
    if (strcmp(o->cmd, "demo") != 0) {
        printf("owner: connecting to P0 at %s, P1 at %s, P2 at %s (up to %u s)\n", peers[0], peers[1], peers[2],
               (unsigned)o->timeout);
        fflush(stdout);
    }
    if (snn_connect_client_tcp(own, peers) != 0) {
        if (own->err == SNN_ERR_TIMEOUT && strcmp(o->cmd, "demo") != 0)
            PERR("%s; are the servers running? start each with: securenn party ID --peers %s,%s,%s%s%s%s",
                 own->errmsg, peers[0], peers[1], peers[2], o->keys ? " --keys " : "", o->keys ? o->keys : "",
                 (o->given & OPT_INSECURE) ? " --insecure" : "");
        else
            PERR("%s", own->errmsg);
        return -1;
    }
    if (snn_setup_keys(own, key_seed(o)) != 0) {
        PERR("%s", own->errmsg);
        return -1;
    }
    return 0;
}

/*
 * owner_run -- the owner's side of a job, as demo, train and infer run it:
 * connect (owner_connect), run the job (progress lines if it reports),
 * close.  secs: the job's time after connecting; owner_bytes (may be
 * NULL): the owner's own traffic.  0, or -1 with the one-line error printed.
 */
static int owner_run(const opts *o, const snn_job *job, snn_owner_io *io, double *secs, uint64_t *owner_bytes)
{
    snn_party own;
    snn_transcript tr;
    prog_progress pc;
    int rc = -1;

    if (owner_connect(&own, &tr, o) == 0) {
        memset(&pc, 0, sizeof pc);
        pc.t0 = now_s();
        pc.secure = 1;
        io->progress = print_progress;
        io->infer_progress = print_infer_progress;
        io->ctx = &pc;
        if (snn_nn_owner(&own, job, io) == 0) rc = 0;
        else PERR("%s", own.errmsg);
        *secs = now_s() - pc.t0;
        io->progress = NULL;
        io->infer_progress = NULL;
        io->ctx = NULL;
    }
    if (owner_bytes) *owner_bytes = own.net.stats.bytes_sent + own.net.stats.bytes_recv;
    if (transcript_end(&tr) != 0) rc = -1;
    snn_party_close(&own);
    return rc;
}

/* Waits up to timeout_s for the children; kills those still running.
 * Returns the number that failed. */
static int reap(const pid_t *pid, size_t n, double timeout_s)
{
    double end = now_s() + timeout_s;
    int done[SNN_NPARTY] = { 0, 0, 0 }, failed = 0;
    size_t k, left = n;
    while (left > 0) {
        for (k = 0; k < n; k++) {
            int st;
            pid_t r;
            if (done[k]) continue;
            r = waitpid(pid[k], &st, WNOHANG);
            if (r == pid[k] || r < 0) {
                done[k] = 1;
                left--;
                if (r < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
            }
        }
        if (left == 0) break;
        if (now_s() > end) {
            for (k = 0; k < n; k++)
                if (!done[k]) {
                    PERR("party %zu did not finish within %.0f s; killed", k, timeout_s);
                    kill(pid[k], SIGKILL);
                    waitpid(pid[k], NULL, 0);
                    failed++;
                }
            break;
        }
        {
            struct timespec ts = { 0, 20 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    return failed;
}

/* Ends the demo's parties at once, when one of them could not start. */
static void stop_kids(const pid_t *pid, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++) kill(pid[k], SIGTERM);
}

/* Trains the twin on the owner's batches (progress to stdout when
 * verbose) from the same seed, then classifies the test split into pred.
 * 0, or -1 with the twin's reason printed. */
static int twin_run(const plan *pl, uint64_t *param, const snn_mnist *train, const snn_mnist *test,
                    uint64_t *pred, int verbose, int checkpoints)
{
    snn_prg g, r;
    prog_progress pc;
    char err[200];
    snn_train_cfg cfg;
    snn_ckpt ck;
    ckpt_ctx cc;
    memset(&pc, 0, sizeof pc);
    pc.t0 = now_s();
    pc.secure = 0;
    owner_prg(&g, pl->seed, 1);
    snn_nn_init_params(&pl->net, param, &g);
    owner_prg(&g, pl->seed, 2);
    owner_prg(&r, pl->seed, 3);
    plan_train_cfg(&cfg, pl, &g, &r);
    cfg.every = verbose ? pl->every : 0;
    cfg.progress = print_progress;
    cfg.progress_ctx = &pc;
    if (pl->resume.param) {             /* where the checkpoint's run stood */
        memcpy(param, pl->resume.param, pl->net.nparam * sizeof *param);
        cfg.start = pl->resume.done;
        snn_prg_seek(&r, pl->resume.round_pos);
    }
    if (checkpoints && pl->ckpt_every) {
        cc.pl = pl;
        cc.train = train;
        cc.secure = 0;
        ck.every = pl->ckpt_every;
        ck.save = save_checkpoint;
        ck.ctx = &cc;
        cfg.after_step = snn_ckpt_step;
        cfg.step_ctx = &ck;
    }
    if (pl->iters && snn_plain_train(&pl->net, param, train, &cfg, err, sizeof err) != 0) {
        PERR("plaintext training: %s", err);
        return -1;
    }
    if (snn_plain_infer(&pl->net, param, test, pl->test_n, pl->batch, pred, err, sizeof err) != 0) {
        PERR("plaintext inference: %s", err);
        return -1;
    }
    return 0;
}

/* ---- 16c. demo: three forked servers and the owner in one run ----------- */

/* What one demo run holds: the owner's data, plan and results. */
typedef struct {
    snn_mnist train, test;
    plan      pl;
    uint64_t *param;            /* the owner's model (pl.net.nparam)      */
    uint64_t *pred, *tpred;     /* secure and twin predictions (test_n)  */
    pid_t     pid[SNN_NPARTY];  /* the forked servers                    */
    size_t    nkids;
    FILE     *predf;            /* --predictions, or NULL                */
} demo_run;

/* Step 1: the data, the plan, the buffers and the opening lines. */
static int demo_open(demo_run *d, opts *o)
{
    char err[256];
    size_t k;
    if (o->model && snn_model_writable(o->model, err, sizeof err) != 0) {
        PERR("--model %s (nothing was run)", err);
        return -1;
    }
    if (!(o->given & OPT_PORT)) o->port = 7000;
    if (!(o->given & OPT_DATA)) o->data = "data";
    for (k = 0; k < SNN_NPARTY; k++)
        snprintf(o->peers[k], sizeof o->peers[k], "127.0.0.1:%u", (unsigned)(o->port + k));
    if (load_split(&d->train, o, "train") != 0 || load_split(&d->test, o, "test") != 0
        || open_predictions(o, &d->predf) != 0)
        return -1;
    if (plan_from(&d->pl, o, &d->train, 1) != 0) return -1;
    if (!d->pl.test_n || d->pl.test_n > d->test.n) d->pl.test_n = d->test.n;
    if (!(d->param = nn_alloc(d->pl.net.nparam)) || !(d->pred = nn_alloc(d->pl.test_n))
        || !(d->tpred = nn_alloc(d->pl.test_n))) {
        PERR("out of memory");
        return -1;
    }
    printf("SecureNN demo: network %s, %zu parameters; %zu training and %zu test digits from %s/\n",
           snn_net_name(d->pl.net.id), d->pl.net.nparam, d->train.n, d->pl.test_n, o->data);
    {
        char lr[64];
        printf("batch %zu, %zu iterations (%.1f epochs), learning rate %s, seed %llu\n", d->pl.batch,
               d->pl.iters, (double)d->pl.iters * (double)d->pl.batch / (double)d->train.n,
               lr_text(lr, sizeof lr, &d->pl), (unsigned long long)d->pl.seed);
    }
    print_resume(&d->pl, o->resume);
    return 0;
}

/* Everything the owner holds: wiped and freed (also in each server child,
 * whose copy of the owner's data is erased before it serves). */
static void demo_close(demo_run *d)
{
    snn_mnist_free(&d->train);
    snn_mnist_free(&d->test);
    nn_free(d->param, d->pl.net.nparam);
    nn_free(d->pred, d->pl.test_n);
    nn_free(d->tpred, d->pl.test_n);
    d->param = d->pred = d->tpred = NULL;
    snn_wipe(&d->pl.seed, sizeof d->pl.seed);
    snn_ckpt_free(&d->pl.resume);
    if (d->predf) fclose(d->predf);
    d->predf = NULL;
}

/* --plain: only the twin, in this process. */
static int demo_plain(demo_run *d, const opts *o)
{
    size_t correct;
    double t0 = now_s();
    printf("plaintext twin (fixed point, the same integers as the secure run):\n");
    if (twin_run(&d->pl, d->param, &d->train, &d->test, d->pred, 1, 1) != 0) return -1;
    correct = count_correct(d->pred, &d->test, d->pl.test_n);
    printf("plaintext twin: test accuracy %.2f%% (%zu/%zu) in %.1f s\n%s\n\n",
           100.0 * (double)correct / (double)d->pl.test_n, correct, d->pl.test_n, now_s() - t0,
           paper_accuracy(d->pl.net.id));
    draw_digits(&d->test, d->pred, d->pl.test_n < 6 ? d->pl.test_n : 6);
    if (report_predictions(o, d->predf, &d->test, d->pred, d->pl.test_n) != 0) { d->predf = NULL; return -1; }
    d->predf = NULL;
    return save_model(o, d->pl.net.id, d->param, d->pl.net.nparam);
}

/* Step 2: the owner's job.  Train then classify; D, inference only
 * ([SNN, App. B]), is trained by the owner in the clear first. */
static int demo_job(demo_run *d, snn_job *job, snn_prg *order)
{
    char err[200];
    if (d->pl.net.id != SNN_NET_D) {
        owner_prepare(&d->pl, SNN_JOB_TRAIN | SNN_JOB_INFER, d->param, order, job);
    } else {
        snn_prg r;
        snn_train_cfg cfg;
        owner_prepare(&d->pl, SNN_JOB_INFER, d->param, order, job);
        printf("network D is inference only: the owner trains it in the clear (%zu iterations)\n", d->pl.iters);
        owner_prg(&r, d->pl.seed, 3);
        plan_train_cfg(&cfg, &d->pl, order, &r);
        if (snn_plain_train(&d->pl.net, d->param, &d->train, &cfg, err, sizeof err) != 0) {
            PERR("plaintext training: %s", err);
            return -1;
        }
    }
    if (snn_job_check(job, err, sizeof err) != 0) {
        PERR("%s", err);
        return -1;
    }
    return 0;
}

/* Step 3: P0, P1 and P2 as forked children that run the `party` path.
 * Each child first calls forget(ctx), which erases its copy of the
 * owner's data (the demo's: data, seed and batch order stream); each
 * writes a byte on a pipe once its mesh and keys are set up (or 0 and its
 * error, if it could not start), and this returns once all three have
 * (bounded by --timeout). */
static int start_servers(const opts *o, pid_t pid[SNN_NPARTY], size_t *nkids, void (*forget)(void *),
                         void *ctx)
{
    int ready[2], rc = -1;
    size_t k;
    if (pipe(ready) != 0) {
        PERR("pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    for (k = 0; k < SNN_NPARTY; k++) {
        pid[k] = fork();
        if (pid[k] < 0) {
            PERR("fork: %s", strerror(errno));
            goto cleanup;
        }
        if (pid[k] == 0) {
            close(ready[0]);
            forget(ctx);            /* a server holds none of the owner's data */
            _exit(run_party((int)k, o, ready[1]));
        }
        (*nkids)++;
    }
    close(ready[1]);
    ready[1] = -1;
    for (k = 0; k < SNN_NPARTY; k++) {
        struct pollfd pf;
        unsigned char one, len;
        char why[256];
        pf.fd = ready[0]; pf.events = POLLIN; pf.revents = 0;
        if (poll(&pf, 1, (int)o->timeout * 1000) <= 0 || read(ready[0], &one, 1) != 1) {
            PERR("the parties did not connect to each other within %u s", (unsigned)o->timeout);
            stop_kids(pid, *nkids);
            goto cleanup;
        }
        if (one == 0) {
            /* a party could not start; it wrote why, in one write */
            ssize_t got = read(ready[0], &len, 1) == 1 ? read(ready[0], why, len) : -1;
            why[got > 0 ? (size_t)got : 0] = '\0';
            if (strstr(why, "cannot listen"))
                PERR("%s; %s parties listen on ports %u-%u: choose others with --port P%s", why,
                     strcmp(o->cmd, "demo") == 0 ? "the demo's" : "the local", (unsigned)o->port,
                     (unsigned)o->port + 2, strcmp(o->cmd, "demo") == 0 ? " (make demo PORT=P)" : "");
            else
                PERR("%s", why);
            stop_kids(pid, *nkids);
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    close(ready[0]);
    if (ready[1] >= 0) close(ready[1]);
    return rc;
}

/* A demo server's copy of the owner's data, seed and batch order, erased. */
typedef struct { demo_run *d; snn_prg *order; } demo_secrets;
static void demo_forget(void *ctx)
{
    demo_secrets *c = ctx;
    snn_wipe(c->d->train.images, c->d->train.n * SNN_NN_IN);
    snn_wipe(c->d->train.labels, c->d->train.n);
    snn_wipe(c->d->test.images, c->d->test.n * SNN_NN_IN);
    snn_wipe(c->d->test.labels, c->d->test.n);
    demo_close(c->d);
    snn_wipe(c->order, sizeof *c->order);            /* the batch-order stream */
}

static int demo_servers(demo_run *d, const opts *o, snn_prg *order)
{
    demo_secrets c;
    c.d = d;
    c.order = order;
    return start_servers(o, d->pid, &d->nkids, demo_forget, &c);
}

/* Step 4: the owner runs the job on the servers, then waits for them. */
static int demo_secure(demo_run *d, const opts *o, const snn_job *job, snn_prg *order)
{
    snn_owner_io io;
    double secs = 0;
    size_t correct;
    char b1[32], b2[32];
    ckpt_ctx cc;

    printf("P0, P1, P2 listening on %s, %s, %s; training securely:\n", o->peers[0], o->peers[1], o->peers[2]);
    fflush(stdout);
    memset(&io, 0, sizeof io);
    cc.pl = &d->pl;
    cc.train = &d->train;
    cc.secure = 1;
    io.checkpoint = save_checkpoint;
    io.checkpoint_ctx = &cc;
    io.train = &d->train;
    io.order = order;
    io.test = &d->test;
    io.param = d->param;
    io.pred = d->pred;
    if (owner_run(o, job, &io, &secs, NULL) != 0) return -1;
    d->nkids = 0;
    if (reap(d->pid, SNN_NPARTY, (double)o->timeout) != 0) {
        PERR("a party failed");
        return -1;
    }
    correct = count_correct(d->pred, &d->test, d->pl.test_n);
    fmt_bytes(b1, sizeof b1, (double)io.infer_bytes / (double)d->pl.test_n);
    fmt_bytes(b2, sizeof b2, (double)io.infer_bytes);
    printf("secure %s and inference: %.1f s\n", d->pl.net.id == SNN_NET_D ? "setup" : "training", secs);
    printf("secure inference: test accuracy %.2f%% (%zu/%zu); traffic %s in all, %s per image\n%s\n\n",
           100.0 * (double)correct / (double)d->pl.test_n, correct, d->pl.test_n, b2, b1,
           paper_accuracy(d->pl.net.id));
    draw_digits(&d->test, d->pred, d->pl.test_n < 6 ? d->pl.test_n : 6);
    if (report_predictions(o, d->predf, &d->test, d->pred, d->pl.test_n) != 0) { d->predf = NULL; return -1; }
    d->predf = NULL;
    return save_model(o, d->pl.net.id, d->param, d->pl.net.nparam);
}

/* Step 5: the twin on the same batches, beside the secure accuracy. */
static int demo_twin(demo_run *d)
{
    size_t correct = count_correct(d->pred, &d->test, d->pl.test_n), tc;
    double t0 = now_s();
    printf("plaintext twin on the same batches:\n");
    if (twin_run(&d->pl, d->param, &d->train, &d->test, d->tpred, 0, 0) != 0) return -1;
    tc = count_correct(d->tpred, &d->test, d->pl.test_n);
    printf("plaintext twin: test accuracy %.2f%% (%zu/%zu) in %.1f s; secure - twin = %+.2f points\n",
           100.0 * (double)tc / (double)d->pl.test_n, tc, d->pl.test_n, now_s() - t0,
           100.0 * ((double)correct - (double)tc) / (double)d->pl.test_n);
    return 0;
}

/* demo's entry in the command list (and demo --help). */
static const char help_demo[] =
"  demo            fork P0, P1, P2 on 127.0.0.1 (ports 7000-7002) and act as the\n"
"                  owner: train securely (progress per report), then classify the\n"
"                  test split securely (accuracy, traffic per image, a few\n"
"                  digits), then train the plaintext twin on the same batches to\n"
"                  compare.  Network D is inference only: the owner trains it in\n"
"                  the clear.\n";

/*
 * cmd_demo -- the `demo` command (help_demo): the owner's data and
 * plan; with --plain only the twin; else the job, three forked servers, the
 * secure run, and the twin on the same batches to compare.
 */
static int cmd_demo(opts *o, int nop, char **op)
{
    demo_run d;
    snn_job job;
    snn_prg order;
    int rc = 1;
    (void)nop;
    (void)op;

    memset(&d, 0, sizeof d);
    if (demo_open(&d, o) != 0) goto cleanup;
    if (o->given & OPT_PLAIN) {
        rc = demo_plain(&d, o) != 0;
        goto cleanup;
    }
    if (demo_job(&d, &job, &order) != 0 || demo_servers(&d, o, &order) != 0 || demo_secure(&d, o, &job, &order) != 0)
        goto cleanup;
    if (!(o->given & OPT_NOTWIN) && demo_twin(&d) != 0) goto cleanup;
    rc = 0;
cleanup:
    if (d.nkids && reap(d.pid, d.nkids, (double)o->timeout) != 0) rc = 1;
    demo_close(&d);
    snn_wipe(&order, sizeof order);
    return rc;
}

/* ---- 16d. Owner commands against running servers: train, infer ---------- */

/* train's entry in the command list (and train --help). */
static const char help_train[] =
"  train           the owner: train on three running parties, save with --model\n";

/* cmd_train -- the owner trains on three running parties (`party`). */
static int cmd_train(opts *o, int nop, char **op)
{
    snn_mnist train;
    plan pl;
    snn_owner_io io;
    snn_job job;
    snn_prg order;
    uint64_t *param = NULL, owner_bytes = 0;
    double secs = 0;
    int rc = 1;
    char b[32], lr[64], err[256];
    ckpt_ctx cc;
    (void)nop;
    (void)op;

    memset(&train, 0, sizeof train);
    memset(&pl, 0, sizeof pl);
    if (o->model && snn_model_writable(o->model, err, sizeof err) != 0) {
        PERR("--model %s (nothing was run)", err);
        return 1;
    }
    if (!(o->given & OPT_DATA)) o->data = "data";
    if (o->net == SNN_NET_D) {
        PERR("network D is for inference only ([SNN, App. B]); train it with: demo --net D --plain --model FILE");
        return 2;
    }
    if (load_split(&train, o, "train") != 0 || plan_from(&pl, o, &train, 0) != 0) goto cleanup;
    if (!o->model && !(o->given & OPT_NOSAVE)) {
        PERR("train: --model FILE is required to keep the trained weights (or --no-save to run without)");
        rc = 2;
        goto cleanup;
    }
    if (o->model && (o->given & OPT_NOSAVE)) {
        PERR("train: --model FILE and --no-save contradict each other");
        rc = 2;
        goto cleanup;
    }
    if (!(param = nn_alloc(pl.net.nparam))) { PERR("out of memory"); goto cleanup; }
    owner_prepare(&pl, SNN_JOB_TRAIN, param, &order, &job);
    printf("training network %s: batch %zu, %zu iterations, learning rate %s, seed %llu\n",
           snn_net_name(pl.net.id), pl.batch, pl.iters, lr_text(lr, sizeof lr, &pl), (unsigned long long)pl.seed);
    print_resume(&pl, o->resume);
    memset(&io, 0, sizeof io);
    cc.pl = &pl;
    cc.train = &train;
    cc.secure = 1;
    io.checkpoint = save_checkpoint;
    io.checkpoint_ctx = &cc;
    io.train = &train;
    io.order = &order;
    io.param = param;
    if (owner_run(o, &job, &io, &secs, &owner_bytes) != 0) goto cleanup;
    fmt_bytes(b, sizeof b, (double)owner_bytes);
    printf("trained in %.1f s (owner traffic %s)\n", secs, b);
    if (!o->model) printf("--no-save: the trained weights are not saved\n");
    else if (save_model(o, pl.net.id, param, pl.net.nparam) != 0) goto cleanup;
    rc = 0;
cleanup:
    snn_mnist_free(&train);
    nn_free(param, pl.net.nparam);
    snn_wipe(&order, sizeof order);
    snn_wipe(&pl.seed, sizeof pl.seed);
    snn_ckpt_free(&pl.resume);
    return rc;
}

/* What an infer --local server forgets of the owner's: the test digits
 * and the model. */
typedef struct { snn_mnist *test; snn_model *m; } infer_secrets;
static void infer_forget(void *ctx)
{
    infer_secrets *c = ctx;
    snn_wipe(c->test->images, c->test->n * SNN_NN_IN);
    snn_wipe(c->test->labels, c->test->n);
    snn_mnist_free(c->test);
    snn_wipe(c->m->param, c->m->n * sizeof *c->m->param);
    snn_model_free(c->m);
}

/* infer's options that go together: 0, or -1 with the error printed. */
static int infer_usage(const opts *o)
{
    if (!o->model) {
        PERR("infer: --model FILE is required");
        return -1;
    }
    if ((o->given & OPT_LOCAL) && (o->given & OPT_PEERS)) {
        PERR("infer: --local forks its own parties on 127.0.0.1 (--port); --peers is for running ones");
        return -1;
    }
    if (!(o->given & OPT_LOCAL) && (o->given & OPT_PORT)) {
        PERR("infer: --port is for --local (the parties' addresses are --peers)");
        return -1;
    }
    return 0;
}

/* The model --model (of --net, if given) into m, its network into net,
 * and what its weights allow into range, refused if it leaves the
 * protocols' ranges.  0, or -1 with the error printed. */
static int infer_model(const opts *o, snn_model *m, snn_net *net, snn_nn_range *range)
{
    char err[256];
    if (snn_model_load(m, o->model, (o->given & OPT_NET) ? o->net : -1, err, sizeof err) != 0) {
        PERR("%s", err);
        return -1;
    }
    snn_net_init(net, m->net);
    if (snn_nn_check_range(net, m->param, 1, 0, range) != 0) {
        snn_nn_layer_name(err, sizeof err, net, range->layer);
        PERR("%s: its weights allow, at %s, %s; refusing the model (nothing was run)", o->model, err, range->why);
        return -1;
    }
    return 0;
}

/* infer's entry in the command list (and infer --help). */
static const char help_infer[] =
"  infer           the owner: classify the test split with --model FILE on three\n"
"                  running parties (--peers), or on three it forks (--local)\n";

/* cmd_infer -- the owner classifies the test split with a saved model, on
 * three running parties or (--local) on three it forks as demo does. */
static int cmd_infer(opts *o, int nop, char **op)
{
    snn_mnist test;
    snn_model m;
    snn_owner_io io;
    snn_job job;
    uint64_t *pred = NULL;
    FILE *predf = NULL;
    size_t n = 0, correct;
    double secs = 0;
    int rc = 1;
    char b1[32], b2[32];
    snn_net net;
    snn_nn_range range;
    infer_secrets secrets;
    pid_t pid[SNN_NPARTY];
    size_t nkids = 0, k;
    (void)nop;
    (void)op;

    memset(&test, 0, sizeof test);
    memset(&m, 0, sizeof m);
    if (!(o->given & OPT_DATA)) o->data = "data";
    if (infer_usage(o) != 0) return 2;
    if (infer_model(o, &m, &net, &range) != 0) goto cleanup;
    if (load_split(&test, o, "test") != 0 || open_predictions(o, &predf) != 0) goto cleanup;
    n = o->test_n && o->test_n < test.n ? (size_t)o->test_n : test.n;
    if (!(pred = nn_alloc(n))) { PERR("out of memory"); goto cleanup; }
    memset(&job, 0, sizeof job);
    job.cmd = SNN_JOB_INFER;
    job.net = (uint32_t)m.net;
    job.batch = (o->given & OPT_BATCH) ? (uint32_t)o->batch : 128;
    job.n_infer = (uint32_t)n;
    if (o->given & OPT_LOCAL) {
        for (k = 0; k < SNN_NPARTY; k++)
            snprintf(o->peers[k], sizeof o->peers[k], "127.0.0.1:%u", (unsigned)(o->port + k));
        secrets.test = &test;
        secrets.m = &m;
        if (start_servers(o, pid, &nkids, infer_forget, &secrets) != 0) goto cleanup;
        printf("P0, P1, P2 forked, listening on %s, %s, %s\n", o->peers[0], o->peers[1], o->peers[2]);
    }
    memset(&io, 0, sizeof io);
    io.test = &test;
    io.param = m.param;
    io.pred = pred;
    if (owner_run(o, &job, &io, &secs, NULL) != 0) goto cleanup;
    if (nkids) {
        nkids = 0;
        if (reap(pid, SNN_NPARTY, (double)o->timeout) != 0) {
            PERR("a party failed");
            goto cleanup;
        }
    }
    correct = count_correct(pred, &test, n);
    fmt_bytes(b1, sizeof b1, (double)io.infer_bytes / (double)n);
    fmt_bytes(b2, sizeof b2, (double)io.infer_bytes);
    printf("network %s, %zu test images: accuracy %.2f%% (%zu/%zu) in %.1f s; traffic %s, %s per image\n",
           snn_net_name(m.net), n, 100.0 * (double)correct / (double)n, correct, n, secs, b2, b1);
    printf("truncation: at most %.2g failed truncations expected in this job (a bound from the weights: "
           "%.2g per image)\n", range.fail_infer * (double)n, range.fail_infer);
    rc = report_predictions(o, predf, &test, pred, n) == 0 ? 0 : 1;
    predf = NULL;
cleanup:
    if (nkids && reap(pid, nkids, (double)o->timeout) != 0) rc = 1;
    if (predf) fclose(predf);
    snn_mnist_free(&test);
    snn_model_free(&m);
    nn_free(pred, n);
    return rc;
}

/* ---- 16e. bench: [SNN] Tables 7 and 8 side by side ---------------------- */

/*
 * One benchmark row: a protocol call of WP Table 8, a network's inference
 * of WP Table 7, or one training iteration (Table 3 gives the paper's time
 * per iteration).  The [SNN] figures are the paper's, in ms (LAN: EC2
 * c4.8xlarge, 625 MB/s, 0.22 ms ping; WAN: 40 MB/s, 58 ms ping); ours are
 * measured here, on loopback.
 */
enum { B_CONV, B_MATMUL, B_MAXPOOL, B_DMP, B_DRELU, B_RELU, B_NET, B_TRAIN };

typedef struct {
    int         kind;
    char        name[12], dims[24]; /* arrays: the table stays in .rodata */
    size_t      a, b, c, d;       /* shape: see bench_setup               */
    double      snn_ms, snn_wan_ms, snn_mb; /* [SNN] LAN and WAN time (ms), traffic (MB);
                                  * MB < 0: not given                      */
    char        snn_rounds[8];    /* [SNN, Table 1]                       */
} bench_item;

static const bench_item bench_items[] = {
    /* WP Table 8: Conv2d (m, f, i, o) is one MatMul of the im2col matrix,
     * (m-f+1)^2 x f^2 i, by the filters, f^2 i x o (SPEC 3: the MB match
     * only with m^2 the output positions). */
    { B_CONV,    "Conv2d",  "8, 5, 16, 50",    8, 5, 16, 50,    3.8,  28.4,   0.42,   "2" },
    { B_CONV,    "Conv2d",  "28, 3, 1, 20",   28, 3,  1, 20,    1.8,  26.5,   0.2,    "2" },
    { B_CONV,    "Conv2d",  "28, 5, 1, 20",   28, 5,  1, 20,    2.8,  27.5,   0.33,   "2" },
    { B_MATMUL,  "MatMul",  "1, 500, 100",     1, 500, 100, 0,  4.8,  29.4,   0.81,   "2" },
    { B_MATMUL,  "MatMul",  "1, 100, 1",       1, 100, 1, 0,    0.33, 25.2,   0.0032, "2" },
    { B_MATMUL,  "MatMul",  "784, 128, 10",  784, 128, 10, 0,   9.7,  34.3,   1.69,   "2" },
    /* Maxpool and DMP: windows x window size (8x8x50 with 4x4 windows is
     * 200 windows of 16) */
    { B_MAXPOOL, "Maxpool", "8x8x50, 4x4",   200, 16, 0, 0,    59.7,  3062.2, 2.23,   "135" },
    { B_MAXPOOL, "Maxpool", "24x24x16, 2x2", 2304, 4, 0, 0,    61.1,  672.6,  5.14,   "27" },
    { B_MAXPOOL, "Maxpool", "24x24x20, 2x2", 2880, 4, 0, 0,    62.6,  685,    6.43,   "27" },
    /* DMP: Pi_DMaxpool plus the product of delta with the one-hot vector
     * (SPEC 3: the paper's DMP figures include it) */
    { B_DMP,     "DMP",     "8x8x50, 4x4",   200, 16, 0, 0,     1.9,  51.6,   0.18,   "2" },
    { B_DMP,     "DMP",     "24x24x16, 2x2", 2304, 4, 0, 0,     4.8,  54.2,   0.52,   "2" },
    { B_DMP,     "DMP",     "24x24x20, 2x2", 2880, 4, 0, 0,     4.9,  55.2,   0.65,   "2" },
    { B_DRELU,   "DReLU",   "64x16",         1024, 0, 0, 0,    11.2,  161.9,  0.68,   "8" },
    { B_DRELU,   "DReLU",   "128x128",      16384, 0, 0, 0,   109.8, 288.7, 10.88,   "8" },
    { B_DRELU,   "DReLU",   "576x20",       11520, 0, 0, 0,    71.5,  232.9,  7.65,   "8" },
    /* ReLU on top of DReLU (Table 8 counts only this part): the product */
    { B_RELU,    "ReLU",    "64x16",         1024, 0, 0, 0,     0.42, 25.3,   0.04,   "2" },
    { B_RELU,    "ReLU",    "128x128",      16384, 0, 0, 0,     2.8,  27.1,   0.66,   "2" },
    { B_RELU,    "ReLU",    "576x20",       11520, 0, 0, 0,     2.5,  26.6,   0.46,   "2" },
    /* WP Table 7: inference, batch 1 and batch 128 (its seconds as ms) */
    { B_NET,     "A",       "batch 1",       SNN_NET_A, 1, 0, 0,    43,    2430,  2.1,   "-" },
    { B_NET,     "A",       "batch 128",     SNN_NET_A, 128, 0, 0,  380,   2790,  29,    "-" },
    { B_NET,     "B",       "batch 1",       SNN_NET_B, 1, 0, 0,    130,   3930,  8.86,  "-" },
    { B_NET,     "B",       "batch 128",     SNN_NET_B, 128, 0, 0,  7180,  21990, 1066,  "-" },
    { B_NET,     "C",       "batch 1",       SNN_NET_C, 1, 0, 0,    230,   4080,  18.94, "-" },
    { B_NET,     "C",       "batch 128",     SNN_NET_C, 128, 0, 0,  10820, 30450, 1550, "-" },
    { B_NET,     "D",       "batch 1",       SNN_NET_D, 1, 0, 0,    76,    3060,  4.05,  "-" },
    { B_NET,     "D",       "batch 128",     SNN_NET_D, 128, 0, 0,  2600,  8040,  317.7, "-" },
    /* One training iteration at batch 128: forward, ASM, backward, SGD.
     * [SNN, Table 3] gives the time of 15 epochs, LAN and WAN, and no
     * traffic; per iteration: hours x 3600 / (15 x 60000 / 128). */
    { B_TRAIN,   "A",       "train, batch 128", SNN_NET_A, 128, 0, 0,  527,   4009,  -1, "-" },
    { B_TRAIN,   "B",       "train, batch 128", SNN_NET_B, 128, 0, 0,  8910,  27638, -1, "-" },
    { B_TRAIN,   "C",       "train, batch 128", SNN_NET_C, 128, 0, 0,  15330, 47099, -1, "-" },
};

#define BENCH_N (sizeof bench_items / sizeof bench_items[0])
#define BENCH_MAXREPS 1000

/* What a party reports for one row: each timed repetition's wall time and
 * CPU time, the communication of the first (every repetition must send
 * the same), and the party's peak resident memory. */
typedef struct {
    int       ok;
    unsigned  reps;
    double    secs[BENCH_MAXREPS];
    double    cpu[BENCH_MAXREPS];
    snn_stats stats;
    int       same_stats;         /* every repetition sent the same bytes and rounds */
    long      peak_rss_kb;        /* getrusage ru_maxrss: kilobytes on Linux */
} bench_rec;

/* The inputs and outputs of one row on one party. */
typedef struct {
    uint64_t    *x, *y, *z, *w, *param, *cls;
    snn_nn_state st;
    snn_net      net;
    size_t       n, m, k, v;
} bench_buf;

/* Random shares for P0 and P1 (the values do not change the cost). */
static uint64_t *bench_shares(snn_party *p, size_t n)
{
    uint64_t *x = nn_alloc(n);
    size_t i;
    if (x && p->id != 2)
        for (i = 0; i < n; i++) x[i] = snn_prg_u64(&p->own) >> 20;
    return x;
}

static double cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec
           + 1e-6 * ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec);
}

/* The inputs are random numbers, not anyone's data or model, so they are
 * freed without the wiping that shares of real data get (snn_free_wiped). */
static void bench_free(bench_buf *bb)
{
    free(bb->x); free(bb->y); free(bb->z); free(bb->w); free(bb->param); free(bb->cls);
    snn_nn_state_free(&bb->st);
    memset(bb, 0, sizeof *bb);
}

/* bench_setup -- the row's inputs, made before any clock starts. */
static int bench_setup(snn_party *p, const bench_item *it, bench_buf *bb)
{
    int rc = -1;
    memset(bb, 0, sizeof *bb);
    switch (it->kind) {
    case B_CONV:
        bb->m = (it->a - it->b + 1) * (it->a - it->b + 1);  /* output positions */
        bb->k = it->b * it->b * it->c;                      /* f^2 i            */
        bb->v = it->d;                                      /* o                */
        if (!(bb->x = bench_shares(p, bb->m * bb->k)) || !(bb->y = bench_shares(p, bb->k * bb->v))
            || !(bb->z = nn_alloc(bb->m * bb->v)))
            goto nomem;
        break;
    case B_MATMUL:
        bb->m = it->a; bb->k = it->b; bb->v = it->c;
        if (!(bb->x = bench_shares(p, bb->m * bb->k)) || !(bb->y = bench_shares(p, bb->k * bb->v))
            || !(bb->z = nn_alloc(bb->m * bb->v)))
            goto nomem;
        break;
    case B_MAXPOOL: case B_DMP:
        bb->n = it->a * it->b;
        if (!(bb->x = bench_shares(p, bb->n)) || !(bb->y = nn_alloc(it->a)) || !(bb->z = nn_alloc(it->a))
            || !(bb->w = nn_alloc(bb->n)) || !(bb->cls = bench_shares(p, bb->n)))
            goto nomem;
        /* DMP needs Maxpool's index: computed before the clock starts */
        if (it->kind == B_DMP) SNN_GUARD(snn_maxpool(p, bb->y, bb->z, bb->x, it->a, it->b));
        break;
    case B_DRELU: case B_RELU:
        bb->n = it->a;
        if (!(bb->x = bench_shares(p, bb->n)) || !(bb->y = nn_alloc(bb->n)) || !(bb->z = nn_alloc(bb->n)))
            goto nomem;
        if (it->kind == B_RELU) SNN_GUARD(snn_drelu(p, bb->y, bb->x, bb->n));
        break;
    case B_NET: case B_TRAIN:
        if (snn_net_init(&bb->net, (int)it->a) != 0 || snn_nn_state_alloc(&bb->st, &bb->net, it->b) != 0)
            goto nomem;
        bb->n = it->b;
        if (!(bb->param = bench_shares(p, bb->net.nparam)) || !(bb->x = bench_shares(p, bb->n * SNN_NN_IN))
            || !(bb->cls = nn_alloc(bb->n)) || !(bb->y = bench_shares(p, bb->n * SNN_NN_OUT)))
            goto nomem;
        break;
    default:
        break;
    }
    rc = 0;
    goto cleanup;
nomem:
    snn_fail(p, SNN_ERR_NOMEM, "bench %s %s: out of memory", it->name, it->dims);
cleanup:
    return rc;
}

/* bench_run -- the measured call of the row. */
static int bench_run(snn_party *p, const bench_item *it, bench_buf *bb)
{
    snn_nn_ctx c = snn_nn_secure(p);
    switch (it->kind) {
    case B_CONV: case B_MATMUL:
        return snn_matmul(p, bb->z, bb->x, bb->y, bb->m, bb->k, bb->v, 0, 0);
    case B_MAXPOOL:
        return snn_maxpool(p, bb->y, bb->z, bb->x, it->a, it->b);
    case B_DMP:
        if (snn_dmaxpool(p, bb->w, bb->z, it->a, it->b) != 0) return -1;
        return snn_mul(p, bb->w, bb->w, bb->cls, bb->n);
    case B_DRELU:
        return snn_drelu(p, bb->y, bb->x, bb->n);
    case B_RELU:
        return snn_mul(p, bb->z, bb->y, bb->x, bb->n);
    case B_NET:
        if (snn_nn_forward(&c, &bb->st, bb->param, bb->x, bb->n) != 0) return -1;
        return snn_nn_predict(&c, bb->cls, &bb->st, bb->n);
    case B_TRAIN:
        /* the paper's learning rates: 2^-7 for A, 2^-5 for B and C */
        return snn_nn_train_step(&c, &bb->st, bb->param, p->id == 2 ? NULL : bb->x,
                                 p->id == 2 ? NULL : bb->y, it->a == SNN_NET_A ? 7u : 5u);
    default:
        return 0;
    }
}

/*
 * All three parties meet here, so that each measurement starts together.
 * Two exchanges, not one: the last party to arrive finds the others'
 * messages already there and would leave one delivery (under --latency, one
 * whole latency) before them; after the second exchange every party leaves
 * when the last party's message reaches it, at the same time.
 */
static int bench_barrier(snn_party *p)
{
    unsigned char one = 1;
    int i, pass;
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < SNN_NPARTY; i++)
            if (i != p->id && snn_send(p, i, SNN_PROTO_SETUP, 3, SNN_KIND_BYTES, &one, 1) != 0) return -1;
        for (i = 0; i < SNN_NPARTY; i++)
            if (i != p->id && snn_recv(p, i, SNN_PROTO_SETUP, 3, SNN_KIND_BYTES, &one, 1) != 0) return -1;
    }
    return 0;
}

/*
 * bench_party -- one party of one row, in a process of its own (so that its
 * peak memory is the row's): connect, set up keys, make the inputs, one
 * warm-up, then reps timed repetitions, each between barriers.  keys: this
 * party's row of the pair keys, to seal every channel; NULL: in the clear.
 */
static int bench_party(int id, const opts *o, const bench_item *it, unsigned reps,
                       const uint8_t (*keys)[32], int out_fd)
{
    snn_party p;
    snn_transcript tr;
    const char *peers[SNN_NPARTY];
    bench_buf bb;
    bench_rec *rec = calloc(1, sizeof *rec);
    struct rusage ru;
    size_t k;
    unsigned r;
    int rc = -1;

    memset(&bb, 0, sizeof bb);
    for (k = 0; k < SNN_NPARTY; k++) peers[k] = o->peers[k];
    snn_party_init(&p, id, (int)o->timeout * 1000);
    snn_set_wan(&p, (unsigned)o->latency, (unsigned)o->bandwidth);
    /* --transcript: every row, appended (cmd_bench empties the files) */
    if (transcript_start(&tr, &p, o, 1) != 0) PERR("%s", p.errmsg);
    if (!rec) { PERR("P%d: bench: out of memory", id); return 1; }
    if (keys)
        for (k = 0; k < SNN_NEND; k++)
            if ((int)k != id) snn_set_channel_key(&p, (int)k, keys[k]);
    SNN_GUARD(snn_connect_tcp(&p, peers));
    SNN_GUARD(snn_setup_keys(&p, &o->key_seed));
    SNN_GUARD(bench_setup(&p, it, &bb));
    rec->same_stats = 1;
    for (r = 0; r <= reps; r++) {               /* r = 0: the warm-up */
        double t0, c0;
        SNN_GUARD(bench_barrier(&p));
        snn_stats_reset(&p);
        c0 = cpu_s();
        t0 = now_s();
        SNN_GUARD(bench_run(&p, it, &bb));
        rec->secs[r ? r - 1 : 0] = now_s() - t0;
        rec->cpu[r ? r - 1 : 0] = cpu_s() - c0;
        /* a tick per repetition: the launcher's wait is bounded per repetition */
        (void)(write(out_fd, "t", 1) == 1);
        if (r == 0) continue;
        if (r == 1) rec->stats = p.net.stats;
        else if (p.net.stats.bytes_sent != rec->stats.bytes_sent || p.net.stats.rounds != rec->stats.rounds)
            rec->same_stats = 0;
    }
    rec->reps = reps;
    rec->ok = 1;
    rc = 0;
cleanup:
    if (getrusage(RUSAGE_SELF, &ru) == 0) rec->peak_rss_kb = ru.ru_maxrss;
    if (p.err) PERR("%s", p.errmsg);
    if (write(out_fd, "r", 1) != 1 || write(out_fd, rec, sizeof *rec) != (ssize_t)sizeof *rec) rc = -1;
    bench_free(&bb);
    if (transcript_end(&tr) != 0) rc = -1;
    snn_party_close(&p);
    close(out_fd);
    free(rec);
    return rc == 0 ? 0 : 1;
}

/* 0 if a party could listen on 127.0.0.1:port now, else -1 and why.  It
 * listens too: beside a listener on the wildcard address, bind succeeds
 * and only listen fails. */
static int bench_port_free(unsigned port, char *why, size_t n)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, rc;
    if (fd < 0) { snprintf(why, n, "socket: %s", strerror(errno)); return -1; }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    rc = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0 ? 0 : -1;
    if (rc != 0) snprintf(why, n, "%s", strerror(errno));
    close(fd);
    return rc == 0 ? 0 : -1;
}

/* Does NAME name row `it` (its name, in any case)? */
static int bench_named(const char *name, const bench_item *it)
{
    return name_is(name, it->name);
}

/* Does row `it` match the NAME filters (none: every row)? */
static int bench_selected(const opts *o, const bench_item *it)
{
    int i;
    if (o->nnames == 0) return 1;
    for (i = 0; i < o->nnames; i++)
        if (bench_named(o->names[i], it)) return 1;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of n values (n >= 1), sorting v. */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * bench_row -- forks P0, P1, P2 for row it and collects their reports.
 * A repetition's time is the slowest party's (the call ends for everyone
 * when the last party finishes).  Returns 0 and fills the results.
 */
static int bench_row(const opts *o, const bench_item *it, unsigned reps, const uint8_t (*keys)[SNN_NEND][32],
                     double *ms, double *cpu_ms, uint64_t *bytes, uint64_t *chan_bytes, uint32_t *rounds,
                     long rss_kb[SNN_NPARTY])
{
    pid_t pid[SNN_NPARTY];
    int fds[SNN_NPARTY][2], ok = 1;
    size_t k, nkids = 0;
    unsigned r;
    bench_rec *rec = calloc(SNN_NPARTY, sizeof *rec);

    if (!rec) { PERR("out of memory"); return -1; }
    fflush(stdout);
    fflush(stderr);
    for (k = 0; k < SNN_NPARTY; k++) {
        if (pipe(fds[k]) != 0) { PERR("pipe: %s", strerror(errno)); ok = 0; break; }
        pid[k] = fork();
        if (pid[k] < 0) { PERR("fork: %s", strerror(errno)); close(fds[k][0]); close(fds[k][1]); ok = 0; break; }
        if (pid[k] == 0) {
            size_t m;
            for (m = 0; m <= k; m++) close(fds[m][0]);
            free(rec);
            _exit(bench_party((int)k, o, it, reps, keys ? (const uint8_t (*)[32])keys[k] : NULL, fds[k][1]));
        }
        close(fds[k][1]);
        nkids++;
    }
    for (k = 0; k < nkids; k++) {
        bench_rec *rp = &rec[k];
        unsigned char *dst = (unsigned char *)rp;
        size_t got = 0;
        int in_record = 0;
        /* A party sends "t" after each repetition, then "r" and its record.
         * Bounded: a repetition may compute for long between messages on a
         * loaded machine (C's training step), and the parties bound their
         * own waits by --timeout, so a party that sends nothing for 30
         * times --timeout has failed. */
        while (got < sizeof *rp) {
            struct pollfd pf;
            ssize_t n;
            pf.fd = fds[k][0]; pf.events = POLLIN; pf.revents = 0;
            if (poll(&pf, 1, o->timeout > 70000 ? INT_MAX : (int)o->timeout * 30000) <= 0) break;
            if (!in_record) {
                unsigned char t;
                n = read(fds[k][0], &t, 1);
                if (n < 0 && errno == EINTR) continue;
                if (n != 1 || (t != 't' && t != 'r')) break;
                in_record = t == 'r';
                continue;
            }
            n = read(fds[k][0], dst + got, sizeof *rp - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (got != sizeof *rp || !rp->ok || rp->reps != reps) {
            /* a party that failed has said why; the others would wait for
             * it until --timeout */
            if (ok) stop_kids(pid, nkids);
            ok = 0;
        }
        close(fds[k][0]);
    }
    if (reap(pid, nkids, (double)o->timeout) != 0) ok = 0;
    if (ok && nkids == SNN_NPARTY) {
        *bytes = *chan_bytes = 0;
        *rounds = 0;
        for (r = 0; r < reps; r++) {
            ms[r] = cpu_ms[r] = 0;
            for (k = 0; k < SNN_NPARTY; k++) {
                if (rec[k].secs[r] * 1e3 > ms[r]) ms[r] = rec[k].secs[r] * 1e3;
                if (rec[k].cpu[r] * 1e3 > cpu_ms[r]) cpu_ms[r] = rec[k].cpu[r] * 1e3;
            }
        }
        for (k = 0; k < SNN_NPARTY; k++) {
            *bytes += rec[k].stats.bytes_sent;
            *chan_bytes += rec[k].stats.channel_bytes;
            if (rec[k].stats.rounds > *rounds) *rounds = rec[k].stats.rounds;
            rss_kb[k] = rec[k].peak_rss_kb;
            if (!rec[k].same_stats) {
                PERR("bench %s %s: the repetitions sent different bytes or rounds", it->name, it->dims);
                ok = 0;
            }
        }
    }
    free(rec);
    return ok && nkids == SNN_NPARTY ? 0 : -1;
}

/*
 * The channel's cryptography alone, in this process: CPU nanoseconds per
 * byte of the ChaCha20 keystream (the PRG's eight-block function),
 * Poly1305, and AEAD_CHACHA20_POLY1305 sealing and opening [RFC8439 2.8],
 * each over 64 MB in frames of 1 MB, with a fixed key (the bytes mean
 * nothing).  Printed under the sealed rows, to explain their cost.
 */
static int bench_crypto(void)
{
    const size_t frame = (size_t)1 << 20, nframe = 64;
    uint8_t key[32], nonce[12], tag[16], *buf = malloc(frame);
    double t, ns[4] = { 0, 0, 0, 0 };
    size_t i;
    snn_prg g;
    int bad = 0;
    if (!buf) { PERR("out of memory"); return -1; }
    memset(key, 7, sizeof key);
    memset(nonce, 0, sizeof nonce);
    memset(buf, 1, frame);
    snn_prg_init(&g, key, 0);
    t = cpu_s();
    for (i = 0; i < nframe; i++) snn_prg_bytes(&g, buf, frame);
    ns[0] = cpu_s() - t;
    t = cpu_s();
    for (i = 0; i < nframe; i++) snn_poly1305(tag, key, buf, frame);
    ns[1] = cpu_s() - t;
    for (i = 0; i < nframe; i++) {             /* seal a frame, then open it */
        nonce[0] = (uint8_t)i;
        t = cpu_s();
        snn_aead_seal(buf, tag, key, nonce, NULL, 0, buf, frame);
        ns[2] += cpu_s() - t;
        t = cpu_s();
        bad |= snn_aead_open(buf, key, nonce, NULL, 0, buf, frame, tag) != 0;
        ns[3] += cpu_s() - t;
    }
    free(buf);
    if (bad) { PERR("bench: the AEAD did not open what it sealed"); return -1; }
    for (i = 0; i < 4; i++) ns[i] *= 1e9 / ((double)frame * (double)nframe);
    printf("The channel's cryptography alone (CPU time per byte, 64 MB in frames of 1 MB):\n"
           "ChaCha20 keystream %.2f ns, Poly1305 %.2f ns, sealing %.2f ns, opening %.2f ns.\n",
           ns[0], ns[1], ns[2], ns[3]);
    return 0;
}

/* bench's checks before any row runs: every NAME names a row (a typo
 * would silently shorten the run), the parties' ports are free (P0 would
 * fail to listen, and the others wait for it), the transcripts can be
 * made (each row appends to them).  0, or the exit code. */
static int bench_check(opts *o)
{
    size_t i, k;
    for (k = 0; k < (size_t)o->nnames; k++) {
        for (i = 0; i < BENCH_N && !bench_named(o->names[k], &bench_items[i]); i++) {}
        if (i == BENCH_N) {
            PERR("bench: no row is named '%s' (rows: Conv2d, MatMul, Maxpool, DMP, DReLU, ReLU, A, B, C, D)",
                 o->names[k]);
            return 2;
        }
    }
    for (k = 0; k < SNN_NPARTY; k++) {
        char why[160];
        if (bench_port_free((unsigned)(o->port + k), why, sizeof why) != 0) {
            PERR("bench: cannot listen on 127.0.0.1:%u: %s; the bench's parties listen on ports %u-%u: "
                 "choose others with --port", (unsigned)(o->port + k), why, (unsigned)o->port,
                 (unsigned)o->port + 2);
            return 1;
        }
    }
    if (o->given & OPT_TRANSCRIPT)
        for (k = 0; k < SNN_NPARTY; k++) {
            char path[4096];
            FILE *f;
            snprintf(path, sizeof path, "%s/P%zu.log", o->transcript, k);
            if (!(f = fopen_private(path, "w")) || fclose(f) != 0) {
                PERR("--transcript: cannot create %s: %s", path, strerror(errno));
                return 1;
            }
        }
    return 0;
}

/* The table's head: what is measured and how (or the CSV header). */
static void bench_head(const opts *o, unsigned reps, int csv, int wan)
{
    if (csv) {
        printf("name,dims,ms_median,ms_min,ms_max,bytes,rounds,paper_ms,paper_mb,peak_rss_kb\n");
        return;
    }
    printf("SecureNN bench: P0, P1, P2 as processes on 127.0.0.1 over TCP (%s, %s, %s)\n",
           o->peers[0], o->peers[1], o->peers[2]);
    if (o->latency || o->bandwidth) {
        char bw[32];
        if (o->bandwidth) snprintf(bw, sizeof bw, "is paced at %u MB/s", (unsigned)o->bandwidth);
        else snprintf(bw, sizeof bw, "is not paced");
        printf("WAN emulation: every frame a party receives is delivered %u ms late; each link\n"
               "%s.\n", (unsigned)o->latency, bw);
    }
    printf("Each row: the median, min and max of %u timed repetition%s after one warm-up; a\n", reps,
           reps == 1 ? "" : "s");
    if (wan) {
        printf("repetition lasts until the slowest party is done.  [SNN]: the paper's WAN figures\n");
        printf("(EC2 c4.8xlarge, 40 MB/s, 58 ms ping, PrivateCompare on 4 cores); ratio = ours/[SNN].\n");
    } else {
        printf("repetition lasts until the slowest party is done.  [SNN]: the paper's LAN figures\n");
        printf("(EC2 c4.8xlarge, 625 MB/s, 0.22 ms ping, PrivateCompare on 4 cores); ratio = ours/[SNN].\n");
    }
    printf("MB = 10^6 payload bytes sent by all three parties; rounds = the longest chain of\n");
    printf("messages that wait on each other (measured); cpu = the busiest party's CPU time\n");
    printf("(median); peak MiB = each party's peak resident memory, P0/P1/P2.\n\n");
    printf("%-8s %-17s %9s %9s %9s %9s %6s %8s %9s %8s %5s %5s  %s\n", "", "", "median", "min", "max",
           "[SNN]", "ratio", "cpu", "MB", "[SNN]", "rnds", "[SNN]", "peak MiB");
}

/* The share of one core that a short busy loop gets: about 1 on an idle
 * machine, less when other processes compete for the cores (the bench's
 * times assume idle ones).  CPU time over wall time, both POSIX. */
static double bench_idle_share(void)
{
    volatile uint64_t x = 1;
    double t0 = now_s(), c0 = cpu_s(), wall;
    do {
        unsigned i;
        for (i = 0; i < 100000; i++) x = x * 6364136223846793005u + 1;
    } while ((wall = now_s() - t0) < 0.2);
    return (cpu_s() - c0) / wall;
}

/* Warns on stderr when the machine was busy (bench_idle_share). */
static void bench_busy_warn(double share, const char *when)
{
    if (share < 0.9)
        fprintf(stderr, "securenn: bench: warning: the machine is busy %s (a busy loop got %.0f%% of a core): "
                "the times depend on idle cores\n", when, 100.0 * share);
}

/* The min and max of v[0..n-1], n >= 1. */
static void min_max(const double *v, size_t n, double *mn, double *mx)
{
    size_t r;
    *mn = *mx = v[0];
    for (r = 1; r < n; r++) { if (v[r] < *mn) *mn = v[r]; if (v[r] > *mx) *mx = v[r]; }
}

/* The largest of the parties' peak memory figures. */
static long peak_of(const long rss[SNN_NPARTY])
{
    long peak = rss[0] > rss[1] ? rss[0] : rss[1];
    return rss[2] > peak ? rss[2] : peak;
}

/* What the rows share: the options, repetitions, buffers of the timings,
 * each clear row's medians (for the sealed rows' cost), the pair keys. */
typedef struct {
    const opts *o;
    unsigned    reps;
    int         csv, wan, last_head;
    double     *ms, *cpu, clear_med[BENCH_N], clear_cpu[BENCH_N];
    uint8_t     keys[SNN_NEND][SNN_NEND][32];
} bench_table;

/* Row i with channels in the clear: timed, then printed. */
static int bench_clear_row(bench_table *br, size_t i)
{
    static const char head[][56] = { "WP Table 8: protocols (time in ms)",
                                     "WP Table 7: inference (time in ms)",
                                     "[SNN] Table 3: one training iteration (time in ms)" };
    const bench_item *it = &bench_items[i];
    const int h = it->kind == B_NET ? 1 : it->kind == B_TRAIN ? 2 : 0;
    const double pms = br->wan ? it->snn_wan_ms : it->snn_ms;
    double med, mn, mx, cmed;
    uint64_t bytes = 0, chan = 0;
    uint32_t rounds = 0;
    long rss[SNN_NPARTY] = { 0, 0, 0 };
    char mb[16];
    fprintf(stderr, "bench: %s %s\n", it->name, it->dims);
    if (bench_row(br->o, it, br->reps, NULL, br->ms, br->cpu, &bytes, &chan, &rounds, rss) != 0) {
        PERR("bench %s %s failed", it->name, it->dims);
        return -1;
    }
    min_max(br->ms, br->reps, &mn, &mx);
    med = br->clear_med[i] = median(br->ms, br->reps);
    cmed = br->clear_cpu[i] = median(br->cpu, br->reps);
    if (br->csv) {
        printf("%s,\"%s\",%.3f,%.3f,%.3f,%llu,%u,%.2f,", it->name, it->dims, med, mn, mx,
               (unsigned long long)bytes, (unsigned)rounds, pms);
        if (it->snn_mb >= 0) printf("%g", it->snn_mb);
        printf(",%ld\n", peak_of(rss));
    } else {
        if (h != br->last_head) printf("%s\n", head[h]);
        br->last_head = h;
        if (it->snn_mb >= 0) snprintf(mb, sizeof mb, "%.4g", it->snn_mb);
        else snprintf(mb, sizeof mb, "-");
        printf("%-8s %-17s %9.2f %9.2f %9.2f %9.2f %6.2f %8.2f %9.4g %8s %5u %5s  %.0f/%.0f/%.0f\n",
               it->name, it->dims, med, mn, mx, pms, med / pms, cmed, (double)bytes / 1e6,
               mb, (unsigned)rounds, it->snn_rounds, (double)rss[0] / 1024, (double)rss[1] / 1024,
               (double)rss[2] / 1024);
    }
    fflush(stdout);
    return 0;
}

/* Inference row i again with every frame sealed (--keys:
 * ChaCha20-Poly1305): the channel's cost.  In --csv, dims gains ", sealed". */
static int bench_sealed_row(bench_table *br, size_t i)
{
    const bench_item *it = &bench_items[i];
    double med, mn, mx, cmed;
    uint64_t bytes = 0, chan = 0;
    uint32_t rounds = 0;
    long rss[SNN_NPARTY] = { 0, 0, 0 };
    fprintf(stderr, "bench: %s %s, sealed\n", it->name, it->dims);
    if (bench_row(br->o, it, br->reps, (const uint8_t (*)[SNN_NEND][32])br->keys, br->ms, br->cpu, &bytes, &chan,
                  &rounds, rss) != 0) {
        PERR("bench %s %s with sealed channels failed", it->name, it->dims);
        return -1;
    }
    min_max(br->ms, br->reps, &mn, &mx);
    med = median(br->ms, br->reps);
    if (br->csv) {
        printf("%s,\"%s, sealed\",%.3f,%.3f,%.3f,%llu,%u,%.2f,%g,%ld\n", it->name, it->dims, med, mn, mx,
               (unsigned long long)bytes, (unsigned)rounds, br->wan ? it->snn_wan_ms : it->snn_ms, it->snn_mb,
               peak_of(rss));
    } else {
        cmed = median(br->cpu, br->reps);
        printf("%-8s %-17s %10.2f %10.2f %+6.1f%% %10.0f %10.0f %+6.1f%% %9.4g %10.4g\n", it->name, it->dims,
               br->clear_med[i], med, 100.0 * (med - br->clear_med[i]) / br->clear_med[i], br->clear_cpu[i], cmed,
               100.0 * (cmed - br->clear_cpu[i]) / br->clear_cpu[i], (double)bytes / 1e6, (double)chan / 1e6);
    }
    fflush(stdout);
    return 0;
}

/* Fresh pair keys for the sealed rows, held in memory only: 0, or -1. */
static int bench_keys(uint8_t keys[SNN_NEND][SNN_NEND][32])
{
    size_t k, i;
    memset(keys, 0, SNN_NEND * SNN_NEND * 32);
    for (k = 0; k < SNN_NEND; k++)
        for (i = k + 1; i < SNN_NEND; i++) {
            if (snn_os_random(keys[k][i], 32) != 0) return -1;
            memcpy(keys[i][k], keys[k][i], 32);
        }
    return 0;
}

/* bench's entry in the command list (and bench --help). */
static const char help_bench[] =
"  bench [NAME...] time, bytes and rounds of each protocol of WP Table 8, each\n"
"                  network's inference (WP Table 7) and training iteration\n"
"                  (Table 3), beside the paper's figures, with each party's peak\n"
"                  memory, then the inference rows again with sealed channels;\n"
"                  NAME runs only the rows so named, in any case (DReLU, C, ...)\n"
"                  (--port, --key-seed)\n";

/*
 * cmd_bench -- for each selected row, forks P0, P1, P2 over TCP on
 * 127.0.0.1 and prints the median of --reps timed repetitions beside
 * [SNN]'s figures (or, with --csv, one machine-readable line per row);
 * each row's name goes to stderr as it starts, and a warning if the
 * machine was busy (bench_idle_share).
 */
static int cmd_bench(opts *o, int nop, char **op)
{
    bench_table br;
    size_t i, k, nnet = 0;
    int rc;
    (void)nop;
    (void)op;

    if (!(o->given & OPT_PORT)) o->port = 7100;
    if (!(o->given & OPT_KEYSEED)) o->key_seed = 1;   /* random inputs, no data: reproducible by default */
    if ((rc = bench_check(o)) != 0) return rc;
    rc = 1;
    for (k = 0; k < SNN_NPARTY; k++)
        snprintf(o->peers[k], sizeof o->peers[k], "127.0.0.1:%u", (unsigned)(o->port + k));
    for (i = 0; i < BENCH_N; i++)
        nnet += (size_t)(bench_selected(o, &bench_items[i]) && bench_items[i].kind == B_NET);
    memset(&br, 0, sizeof br);
    br.o = o;
    br.reps = (o->given & OPT_REPS) ? (unsigned)o->reps : 3;
    br.csv = (o->given & OPT_CSV) != 0;
    br.wan = o->latency > 0;              /* beside the paper's WAN figures */
    br.last_head = -1;
    if (bench_keys(br.keys) != 0) { PERR("cannot read the operating system's randomness"); goto cleanup; }
    br.ms = calloc(br.reps, sizeof *br.ms);
    br.cpu = calloc(br.reps, sizeof *br.cpu);
    if (!br.ms || !br.cpu) { PERR("out of memory"); goto cleanup; }
    bench_busy_warn(bench_idle_share(), "as the bench starts");
    bench_head(o, br.reps, br.csv, br.wan);
    fflush(stdout);
    for (i = 0; i < BENCH_N; i++)
        if (bench_selected(o, &bench_items[i]) && bench_clear_row(&br, i) != 0) goto cleanup;
    if (nnet && !br.csv) {
        printf("\nSealed channels (--keys: ChaCha20-Poly1305 on every frame), the rows of WP Table 7 again:\n");
        printf("medians of the time and of the busiest party's CPU time (ms), clear and sealed\n");
        printf("%-8s %-17s %10s %10s %7s %10s %10s %7s %9s %10s\n", "", "", "clear ms", "sealed ms", "cost",
               "clear cpu", "sealed cpu", "cost", "MB", "channel MB");
    }
    for (i = 0; i < BENCH_N && nnet; i++)
        if (bench_selected(o, &bench_items[i]) && bench_items[i].kind == B_NET && bench_sealed_row(&br, i) != 0)
            goto cleanup;
    if (nnet && !br.csv && bench_crypto() != 0) goto cleanup;
    bench_busy_warn(bench_idle_share(), "as the bench ends");
    rc = 0;
cleanup:
    snn_wipe(br.keys, sizeof br.keys);
    free(br.ms);
    free(br.cpu);
    return rc;
}

/* ---- 16f. explain: one protocol, step by step, for a lecture ------------- */
/*
 * `securenn explain PROTOCOL [values...]` runs one protocol of [SNN] on a
 * few small inputs across three real processes (P0, P1, P2 forked, over
 * socketpairs, keys set up as everywhere else) and tells it as SPEC
 * section 2 numbers it: what each party computes, in the paper's notation;
 * then every frame that crosses the wire, in round order, with its ring,
 * its values and what a pair of shares reconstructs to; then the result
 * beside the plaintext.  Each party records the frames it sends (a
 * read-only frame hook, as for --transcript) and its output shares, and
 * reports them on a pipe; this process deals the input shares and
 * reconstructs only for display.  The output fits 100 columns.
 */

#define EX_MAXN  8                   /* input items                        */
#define EX_MAXV  (64 * EX_MAXN)      /* values kept per frame              */
#define EX_MAXF  96                  /* frames kept per party              */

typedef struct {
    char name[16];                   /* on the command line                */
    int  proto;
    char title[48];
    int  per;                        /* values per item (0: a whole list)  */
    char args[96];                   /* what the values are                */
    char defaults[24];
    char steps[1200];                /* SPEC section 2, one step a line    */
} ex_proto;

static const ex_proto ex_protos[] = {
    { "MatMul", SNN_PROTO_MATMUL, "Pi_MatMul [SNN, Alg. 1], SPEC 2.1", 0,
      "x_1 .. x_k y_1 .. y_k: W = X Y for the row X = (x_i) and the column Y = (y_i)", "1 2 3 4 5 6",
      "Step 1 [P0,P2] U_0, V_0, Z_0 from K02; [P1,P2] U_1, V_1 from K12 (no messages)\n"
      "Step 1 [P2]    Z_1 = (U_0 + U_1)(V_0 + V_1) - Z_0, sent to P1: the triple (U, V, Z = UV)\n"
      "Step 2 [Pj]    E_j = X_j - U_j, F_j = Y_j - V_j, sent to P(1-j); both get E = X - U, F = Y - V\n"
      "Step 3 [Pj]    W_j = -j E F + X_j F + E Y_j + Z_j (+ a zero share from K01): W = X Y\n"
      "Step 4         fixed point only: truncate W_j locally by f bits (not here: integers)\n" },
    { "SelectShare", SNN_PROTO_SS, "Pi_SelectShare [SNN, Alg. 2], SPEC 2.2", 3,
      "alpha x y ...: z = (1 - alpha) x + alpha y, alpha 0 or 1", "0 7 9 1 7 9",
      "Step 1 [Pj]    w_j = y_j - x_j (local)\n"
      "Step 2 [all]   c = Pi_MatMul(alpha, w), element-wise: the frames below are MatMul's\n"
      "Step 3 [Pj]    z_j = x_j + c_j + u_j, u a zero share from K01: z = x + alpha (y - x)\n" },
    { "PrivateCompare", SNN_PROTO_PC, "Pi_PrivateCompare [SNN, Alg. 3], SPEC 2.3", 3,
      "x r beta ...: P2 learns beta' = beta XOR (x > r); x, r in [0, 2^64), beta 0 or 1", "5 3 0 3 5 1",
      "Input  [Pj]    Z_p shares (p = 67) of the 64 bits x[i] of x; r and beta public to P0, P1\n"
      "Step 1 [P0,P1] from K01: s_i, u_i in Z_p^*, a permutation pi of 64 positions; t = r + 1\n"
      "Step 2 [Pj]    beta = 0: w_i = x_i + j r_i - 2 r_i x_i (a share of x_i XOR r_i),\n"
      "                         c_i = j r_i - x_i + j + sum_{k>i} w_k   (0 only where x > r decides)\n"
      "               beta = 1: the same with t for r and the signs of x_i, t_i swapped (x < t)\n"
      "               beta = 1, r = 2^64 - 1: one c_i shares 0, the others 1 (x <= r always)\n"
      "Step 3 [Pj]    d_i = s_i c_i mod p, permuted by pi, plus a zero share m from K01 (SPEC 4.5 a);\n"
      "               sent to P2.  P2 adds the two: d_i = s_i c_i, all non-zero but at most one\n"
      "Step 4 [P2]    beta' = 1 if some d_i = 0, else 0: beta' = beta XOR (x > r)\n" },
    { "ShareConvert", SNN_PROTO_SC, "Pi_ShareConvert [SNN, Alg. 4], SPEC 2.4", 1,
      "a ...: shares of a over Z_L become shares of a over Z_{L-1}; a != -1 (that is L - 1)", "5 -3",
      "Common [P0,P1] from K01: a bit eta'', r_0, r_1 in Z_L; r = r_0 + r_1 != 0, alpha = wrap(r_0, r_1)\n"
      "Step 1 [Pj]    a~_j = a_j + r_j, beta_j = wrap(a_j, r_j); a~_j sent to P2\n"
      "Step 2 [P2]    x = a~_0 + a~_1 = a + r, delta = wrap(a~_0, a~_1); sends Z_p shares of the bits\n"
      "               of x and Z_{L-1} shares of delta\n"
      "Step 3 [all]   Pi_PC(bits of x, r - 1, eta''): P2 learns eta' = eta'' XOR (x > r - 1)\n"
      "Step 4 [P2]    sends Z_{L-1} shares of eta'\n"
      "Step 5 [Pj]    eta_j = eta'_j + (1-j) eta'' - 2 eta'' eta'_j (a share of eta = [x >= r]);\n"
      "               theta_j = beta_j + (1-j)(-alpha - 1) + delta_j + eta_j (theta = wrap(a_0, a_1));\n"
      "               y_j = a_j - theta_j + u_j over Z_{L-1}: y = a mod (L - 1)\n"
      "Note           a negative a is L - |a| in Z_L, which is -(|a| - 1) in Z_{L-1}: -3 becomes -2\n" },
    { "ComputeMSB", SNN_PROTO_MSB, "Pi_ComputeMSB [SNN, Alg. 5], SPEC 2.5", 1,
      "a ...: shares of a over Z_{L-1} (negative a: L - 1 - |a|) give shares of MSB(a) over Z_L",
      "5 -3",
      "Common [P0,P1] from K01: a bit beta, a zero share u over Z_L\n"
      "Step 1 [P2]    x uniform in Z_{L-1}; sends shares of x over Z_{L-1}, of its 64 bits over Z_p,\n"
      "               and of x[0] over Z_L\n"
      "Step 2 [Pj]    c_j = 2 a_j + x_j over Z_{L-1}, exchanged: c = 2a + x (the WP's r)\n"
      "Step 3 [all]   Pi_PC(bits of x, c, beta): P2 learns beta' = beta XOR (x > c)\n"
      "Step 4 [P2]    sends Z_L shares of beta'\n"
      "Step 5 [Pj]    gamma_j = j beta + (1 - 2 beta) beta'_j (gamma = [x > c]);\n"
      "               delta_j = j c[0] + (1 - 2 c[0]) x[0]_j (delta = c[0] XOR x[0])\n"
      "Step 6 [all]   theta = Pi_MatMul(gamma, delta), element-wise\n"
      "Step 7 [Pj]    alpha_j = gamma_j + delta_j - 2 theta_j + u_j: alpha = MSB(a) = LSB(2a mod L-1)\n" },
    { "DReLU", SNN_PROTO_DRELU, "Pi_DReLU [SNN, Alg. 6], SPEC 2.6", 1,
      "a ...: alpha = [a >= 0], for -2^62 <= a < 2^62", "5 -3 0",
      "Step 1 [Pj]    c_j = 2 a_j: c is even, so c != L - 1\n"
      "Step 2 [all]   y = Pi_ShareConvert(c): c over Z_{L-1}\n"
      "Step 3 [all]   alpha' = Pi_ComputeMSB(y) = MSB(a) (2a mod L-1 has a's sign bit as its LSB)\n"
      "Step 4 [Pj]    alpha_j = j - alpha'_j + u_j: alpha = 1 - MSB(a) = [a >= 0]\n" },
    { "ReLU", SNN_PROTO_RELU, "Pi_ReLU [SNN, Alg. 7], SPEC 2.7", 1,
      "a ...: y = max(a, 0), for -2^62 <= a < 2^62", "5 -3 0",
      "Step 1 [all]   alpha = Pi_DReLU(a)\n"
      "Step 2 [all]   c = Pi_MatMul(alpha, a), element-wise, no truncation\n"
      "Step 3 [Pj]    y_j = c_j + u_j (a zero share from K01): y = alpha a = max(a, 0)\n" },
    { "Division", SNN_PROTO_DIV, "Pi_Division [SNN, Alg. 8 (a)], SPEC 2.8", 2,
      "x y ...: q = floor(x / y), 0 <= x < 2^20, 0 < y < 2^20", "13 4",
      "Loop  i = l_D - 1 down to 0 (l_D: the bits of the largest q), with u_{l_D} = 0:\n"
      "Step 1 [Pj]    z_i = x - u_{i+1} - 2^i y + w_i (w_i a zero share)\n"
      "Step 2 [all]   beta_i = Pi_DReLU(z_i) = [x - u_{i+1} >= 2^i y]: bit i of q\n"
      "Step 3 [all]   v_i = Pi_MatMul(beta_i, 2^i y), element-wise\n"
      "Step 4 [Pj]    k_i = 2^i beta_i (local)\n"
      "Step 5 [Pj]    u_i = u_{i+1} + v_i\n"
      "Output [Pj]    q_j = sum_i k_i + s_j (s a zero share)\n" },
    { "Maxpool", SNN_PROTO_MAXPOOL, "Pi_Maxpool [SNN, Alg. 9], SPEC 2.9", 0,
      "x_1 .. x_n: one window; its max and the (0-based) index of the max, ties to the later",
      "3 -1 7 7 2",
      "Start [Pj]     max = x_1, ind = 0\n"
      "Loop  i = 2..n:\n"
      "  [Pj]         w = x_i - max\n"
      "  [all]        beta = Pi_DReLU(w) = [x_i >= max]\n"
      "  [all]        max = Pi_SelectShare(beta, max, x_i), ind = Pi_SelectShare(beta, ind, i - 1)\n"
      "Output [Pj]    max + u, ind + v (zero shares)\n" },
    { "DMaxpool", SNN_PROTO_DMAXPOOL, "Pi_DMaxpool [SNN, Alg. 10], SPEC 2.10", 2,
      "ind n: the one-hot vector e_ind of length n (n a power of two up to 8, ind < n)", "2 4",
      "Common [P0,P1] r in Z_L from K01, an n-vector zero share U\n"
      "Step 1         <ind> comes from Pi_Maxpool (here: dealt by this process)\n"
      "Step 2 [Pj]    P0 sends ind_0 + r to P2, P1 sends ind_1\n"
      "Step 3 [P2]    t = ind + r (mod L), k = t mod n; sends Z_L shares of E = e_k\n"
      "Step 4 [Pj]    g = r mod n; D_j[m] = E_j[(m + g) mod n]: e_k rotated back by g is e_ind\n"
      "Step 5 [Pj]    output D_j + U_j\n" },
};

#define EX_NPROTO (sizeof ex_protos / sizeof ex_protos[0])

/* One frame as a party sent it (the first EX_MAXV elements). */
typedef struct {
    uint32_t round, count;
    int      from, to, proto, step, kind;
    uint64_t v[EX_MAXV];
} ex_frame;

/* What a party reports to the narrator. */
typedef struct {
    int      ok;
    char     err[512];
    size_t   nframe, dropped;
    ex_frame f[EX_MAXF];
    size_t   nout;
    uint64_t out[EX_MAXN * 2];
} ex_report;

/* The run: the protocol, its inputs, and P0's and P1's shares of them. */
typedef struct {
    const ex_proto *x;
    size_t   n;                      /* items (Maxpool: window elements)  */
    int64_t  in[3][EX_MAXN];         /* the values, by field              */
    uint64_t a[2][EX_MAXN], b[2][EX_MAXN], c[2][EX_MAXN];
    uint8_t  bits[2][EX_MAXN * 64];  /* PC: Z_p shares of the bits of x   */
    uint64_t r[EX_MAXN];             /* PC: public                        */
    uint8_t  beta[EX_MAXN];          /* PC: public                        */
    size_t   k;                      /* DMaxpool: window length           */
    unsigned ell_d;                  /* Division: quotient bits           */
} ex_run;

/* The frame hook of explain: keeps each frame this party sends. */
static void ex_hook(void *ctx, const struct snn_party_ *p, snn_frame *fr)
{
    ex_report *r = ctx;
    ex_frame *e;
    size_t i, esz = fr->count ? fr->nbytes / fr->count : 0;
    (void)p;
    if (fr->dir != 0) return;
    if (r->nframe == EX_MAXF) { r->dropped++; return; }
    e = &r->f[r->nframe++];
    memset(e, 0, sizeof *e);
    e->round = fr->round; e->count = (uint32_t)fr->count;
    e->from = fr->from; e->to = fr->to; e->proto = fr->proto; e->step = fr->step; e->kind = fr->kind;
    for (i = 0; i < fr->count && i < EX_MAXV; i++)
        e->v[i] = esz == 8 ? snn_load64_le(fr->payload + 8 * i) : fr->payload[i];
}

/* Party id's part: its own shares only (the rest of its copy of the run is
 * wiped first), the protocol, and its output shares into rep. */
static int ex_party(snn_party *p, ex_run *run, ex_report *rep)
{
    int id = p->id, j = id < 2 ? id : 0, rc;
    size_t n = run->n, i;
    uint64_t y[EX_MAXN * 8], z[EX_MAXN], *Y = id < 2 ? y : NULL, *Z = id < 2 ? z : NULL;
    uint8_t bp[EX_MAXN];
    const uint64_t *A = id < 2 ? run->a[j] : NULL, *B = id < 2 ? run->b[j] : NULL, *C = id < 2 ? run->c[j] : NULL;

    if (id < 2) {                    /* the other's shares: not this party's */
        snn_wipe(run->a[1 - j], sizeof run->a[0]);
        snn_wipe(run->b[1 - j], sizeof run->b[0]);
        snn_wipe(run->c[1 - j], sizeof run->c[0]);
        snn_wipe(run->bits[1 - j], sizeof run->bits[0]);
    } else {
        snn_wipe(run->a, sizeof run->a);
        snn_wipe(run->b, sizeof run->b);
        snn_wipe(run->c, sizeof run->c);
        snn_wipe(run->bits, sizeof run->bits);
    }
    snn_wipe(run->in, sizeof run->in);
    memset(y, 0, sizeof y);
    memset(z, 0, sizeof z);
    memset(bp, 0, sizeof bp);
    p->net.hook = ex_hook;
    p->net.hook_ctx = rep;
    switch (run->x->proto) {
    case SNN_PROTO_MATMUL:
        rc = snn_matmul(p, Y, A, B, 1, n, 1, 0, 0);
        rep->nout = 1;
        break;
    case SNN_PROTO_SS:
        rc = snn_select_share(p, Y, A, B, C, n);
        rep->nout = n;
        break;
    case SNN_PROTO_PC:
        rc = id < 2 ? snn_private_compare(p, NULL, run->bits[j], run->r, run->beta, n)
                    : snn_private_compare(p, bp, NULL, NULL, NULL, n);
        for (i = 0; i < n; i++) y[i] = bp[i];
        rep->nout = n;
        break;
    case SNN_PROTO_SC:
        rc = snn_share_convert(p, Y, A, n);
        rep->nout = n;
        break;
    case SNN_PROTO_MSB:
        rc = snn_compute_msb(p, Y, A, n);
        rep->nout = n;
        break;
    case SNN_PROTO_DRELU:
        rc = snn_drelu(p, Y, A, n);
        rep->nout = n;
        break;
    case SNN_PROTO_RELU:
        rc = snn_relu(p, Y, NULL, A, n);
        rep->nout = n;
        break;
    case SNN_PROTO_DIV:
        rc = snn_division(p, Y, A, B, n, run->ell_d);
        rep->nout = n;
        break;
    case SNN_PROTO_MAXPOOL:
        rc = snn_maxpool(p, Y, Z, A, 1, n);
        y[1] = z[0];
        rep->nout = 2;
        break;
    default:
        rc = snn_dmaxpool(p, Y, A, 1, run->k);
        rep->nout = run->k;
        break;
    }
    p->net.hook = NULL;
    p->net.hook_ctx = NULL;
    memcpy(rep->out, y, rep->nout * sizeof *y);
    snn_wipe(y, sizeof y);
    return rc;
}

/* Item i's values within the protocol's domain (SPEC's preconditions);
 * Division's l_D and DMaxpool's n follow from them.  0, or -1 printed. */
static int ex_check_item(ex_run *run, const ex_proto *x, size_t i)
{
    int64_t a = run->in[0][i], b = run->in[1][i], c = run->in[2][i];
    uint64_t ua = snn_from_signed(a);
    switch (x->proto) {
    case SNN_PROTO_SS:
        if (a != 0 && a != 1) { PERR("explain SelectShare: alpha is 0 or 1, not %lld", (long long)a); return -1; }
        break;
    case SNN_PROTO_PC:
        if (a < 0 || b < 0 || (c != 0 && c != 1)) {
            PERR("explain PrivateCompare: x and r are not negative, beta is 0 or 1");
            return -1;
        }
        break;
    case SNN_PROTO_SC:
        if (a == -1) { PERR("explain ShareConvert: a = -1 is L - 1, outside its domain (SPEC 2.4)"); return -1; }
        break;
    case SNN_PROTO_DRELU: case SNN_PROTO_RELU:
        if (ua + ((uint64_t)1 << 62) >= ((uint64_t)1 << 63)) {
            PERR("explain %s: |a| must stay below 2^62 (SPEC 2.6)", x->name);
            return -1;
        }
        break;
    case SNN_PROTO_DIV:
        if (a < 0 || a >= (1 << 20) || b <= 0 || b >= (1 << 20)) {
            PERR("explain Division: 0 <= x < 2^20 and 0 < y < 2^20");
            return -1;
        }
        while (((uint64_t)1 << run->ell_d) <= (uint64_t)(a / b)) run->ell_d++;
        break;
    case SNN_PROTO_DMAXPOOL:
        if (b < 1 || b > 8 || (b & (b - 1)) != 0 || a < 0 || a >= b) {
            PERR("explain DMaxpool: n is 1, 2, 4 or 8 and 0 <= ind < n");
            return -1;
        }
        run->k = (size_t)b;
        break;
    default:
        break;
    }
    return 0;
}

/* The dealer's shares of every item: <v>_0 uniform, <v>_1 = v - <v>_0
 * (ComputeMSB's input over Z_{L-1}; PrivateCompare's bits over Z_p). */
static void ex_share(ex_run *run, const ex_proto *x, snn_prg *g)
{
    size_t i;
    int k;
    for (i = 0; i < run->n; i++) {
        for (k = 0; k < 3; k++) {
            uint64_t *s0 = k == 0 ? run->a[0] : k == 1 ? run->b[0] : run->c[0];
            uint64_t *s1 = k == 0 ? run->a[1] : k == 1 ? run->b[1] : run->c[1];
            uint64_t v0 = snn_prg_u64(g), vv = snn_from_signed(run->in[k][i]);
            if (x->proto == SNN_PROTO_MSB && k == 0) {        /* over Z_{L-1} */
                vv = run->in[0][i] < 0 ? SNN_LM1 - (uint64_t)(-(run->in[0][i] + 1)) - 1 : vv;
                v0 = snn_prg_lm1(g);
                s0[i] = v0;
                s1[i] = snn_sub_lm1(vv, v0);
            } else {
                s0[i] = v0;
                s1[i] = vv - v0;
            }
        }
        if (x->proto == SNN_PROTO_PC) {
            uint64_t xv = (uint64_t)run->in[0][i];
            run->r[i] = (uint64_t)run->in[1][i];
            run->beta[i] = (uint8_t)run->in[2][i];
            for (k = 0; k < 64; k++) {
                uint8_t b0 = snn_prg_zp(g);
                run->bits[0][i * 64 + (size_t)k] = b0;
                run->bits[1][i * 64 + (size_t)k] = snn_sub_p((uint8_t)((xv >> k) & 1), b0);
            }
        }
    }
}

/* Parses the values; fills the run with them and the dealt shares. */
static int ex_deal(ex_run *run, const ex_proto *x, int nv, char **v, snn_prg *g)
{
    int64_t val[EX_MAXN * 3];
    size_t i, m = 0, per;
    int k;
    char *end;

    memset(run, 0, sizeof *run);
    run->x = x;
    for (k = 0; k < nv; k++) {
        if (m == EX_MAXN * 3) { PERR("explain: at most %d values", EX_MAXN * 3); return -1; }
        errno = 0;
        val[m++] = strtoll(v[k], &end, 10);
        if (errno || *end || end == v[k]) {
            PERR("explain %s: '%s' is not a whole number (a signed 64-bit integer); the values are %s", x->name,
                 v[k], x->args);
            return -1;
        }
    }
    per = x->per ? (size_t)x->per : m;
    if (x->proto == SNN_PROTO_MATMUL) per = 2;
    if (m == 0 || m % per != 0 || m / per > EX_MAXN || (x->proto == SNN_PROTO_MAXPOOL && m > EX_MAXN)
        || (x->proto == SNN_PROTO_DMAXPOOL && m != 2)) {
        PERR("explain %s: the values are %s (at most %d items)", x->name, x->args, EX_MAXN);
        return -1;
    }
    run->n = x->proto == SNN_PROTO_MAXPOOL ? m : m / per;
    if (x->proto == SNN_PROTO_MATMUL)        /* x_1 .. x_k, then y_1 .. y_k */
        for (i = 0; i < run->n; i++) { run->in[0][i] = val[i]; run->in[1][i] = val[run->n + i]; }
    else if (x->proto == SNN_PROTO_MAXPOOL)
        for (i = 0; i < run->n; i++) run->in[0][i] = val[i];
    else
        for (i = 0; i < run->n; i++)
            for (k = 0; k < (int)per; k++) run->in[k][i] = val[i * per + (size_t)k];
    for (i = 0; i < run->n; i++)
        if (ex_check_item(run, x, i) != 0) return -1;
    if (run->ell_d == 0) run->ell_d = 1;
    ex_share(run, x, g);
    return 0;
}

/* The plaintext answer of item i (Maxpool: 0 max, 1 index; DMaxpool: entry i). */
static uint64_t ex_plain(const ex_run *run, size_t i)
{
    const int64_t *a = run->in[0], *b = run->in[1], *c = run->in[2];
    size_t m, at = 0;
    switch (run->x->proto) {
    case SNN_PROTO_MATMUL: {
        uint64_t s = 0;
        for (m = 0; m < run->n; m++) s += snn_from_signed(a[m]) * snn_from_signed(b[m]);
        return s;
    }
    case SNN_PROTO_SS:      return snn_from_signed(a[i] ? c[i] : b[i]);
    case SNN_PROTO_PC:      return (uint64_t)(c[i] ^ ((uint64_t)a[i] > (uint64_t)b[i]));
    case SNN_PROTO_SC:      return snn_red_lm1(snn_from_signed(a[i]));
    case SNN_PROTO_MSB: {
        uint64_t v = a[i] < 0 ? SNN_LM1 - (uint64_t)(-(a[i] + 1)) - 1 : (uint64_t)a[i];
        return v >> 63;
    }
    case SNN_PROTO_DRELU:   return a[i] >= 0;
    case SNN_PROTO_RELU:    return snn_from_signed(a[i] > 0 ? a[i] : 0);
    case SNN_PROTO_DIV:     return (uint64_t)(a[i] / b[i]);
    case SNN_PROTO_MAXPOOL:
        for (m = 1; m < run->n; m++) if (a[m] >= a[at]) at = m;
        return i == 0 ? snn_from_signed(a[at]) : (uint64_t)at;
    default:                return (uint64_t)a[0] == i;
    }
}

/* The two shares' value in the ring of kind. */
static uint64_t ex_add(int kind, uint64_t x, uint64_t y)
{
    switch (kind) {
    case SNN_KIND_ZLM1: return snn_add_lm1(x, y);
    case SNN_KIND_ZP:   return snn_add_p((uint8_t)x, (uint8_t)y);
    case SNN_KIND_BIT:  return x ^ y;
    default:            return x + y;
    }
}

/* A value for a reader: small ones in decimal (signed, in Z_L and
 * Z_{L-1}), random-looking ones in hex. */
static void ex_fmt(char *buf, size_t n, int kind, uint64_t v)
{
    if (kind == SNN_KIND_ZP || kind == SNN_KIND_BIT || kind == SNN_KIND_BYTES) {
        snprintf(buf, n, "%u", (unsigned)v);
        return;
    }
    if (kind == SNN_KIND_ZLM1 && v > SNN_LM1 / 2) {       /* -(L-1-v) */
        uint64_t m = SNN_LM1 - v;
        if (m < 1000000) { snprintf(buf, n, "-%llu", (unsigned long long)m); return; }
    } else if (snn_to_signed(v) > -1000000 && snn_to_signed(v) < 1000000) {
        snprintf(buf, n, "%lld", (long long)snn_to_signed(v));
        return;
    }
    snprintf(buf, n, "0x%016llx", (unsigned long long)v);
}

/* Values on lines of at most 100 columns after an indent of 13. */
static void ex_values(int kind, const uint64_t *v, size_t n, size_t total)
{
    char b[32];
    size_t i, col = 13;
    fputs("             ", stdout);
    for (i = 0; i < n; i++) {
        ex_fmt(b, sizeof b, kind, v[i]);
        if (col + strlen(b) + 1 > 99) { fputs("\n             ", stdout); col = 13; }
        printf("%s ", b);
        col += strlen(b) + 1;
    }
    if (total > n) {                            /* the tail note too stays within 100 columns */
        snprintf(b, sizeof b, "(and %zu more)", total - n);
        if (col + strlen(b) > 99) fputs("\n             ", stdout);
        fputs(b, stdout);
    }
    putchar('\n');
}

/* Whether frames e and f carry the two shares of one value. */
static int ex_pair(const ex_frame *e, const ex_frame *f)
{
    if (e->proto != f->proto || e->step != f->step || e->kind != f->kind || e->count != f->count) return 0;
    if (e->from < 2 && f->from == 1 - e->from && (f->to == e->to || (e->to == f->from && f->to == e->from)))
        return 1;                                   /* P0, P1 -> X, or P0 <-> P1 */
    return e->from == 2 && f->from == 2 && e->to < 2 && f->to == 1 - e->to;   /* P2 -> P0, P1 */
}

/* The wire: every frame of the three reports, in round order. */
static void ex_wire(const ex_report rep[SNN_NPARTY])
{
    const ex_frame *all[SNN_NPARTY * EX_MAXF];
    int used[SNN_NPARTY * EX_MAXF];
    size_t n = 0, i, k, m;
    for (k = 0; k < SNN_NPARTY; k++)
        for (i = 0; i < rep[k].nframe; i++) all[n++] = &rep[k].f[i];
    for (i = 1; i < n; i++)                      /* insertion sort: stable */
        for (m = i; m > 0 && all[m - 1]->round > all[m]->round; m--) {
            const ex_frame *t = all[m]; all[m] = all[m - 1]; all[m - 1] = t;
        }
    memset(used, 0, sizeof used);
    for (i = 0; i < n; i++) {
        const ex_frame *e = all[i];
        size_t kept = e->count < EX_MAXV ? e->count : EX_MAXV, shown = kept < 64 ? kept : 64;
        char head[100];
        const char *what = snn_step_name(e->proto, e->step, e->kind);
        snprintf(head, sizeof head, "  round %-3u %s -> %s  %s step %d, %s x %u:", (unsigned)e->round,
                 snn_endpoint_name(e->from), snn_endpoint_name(e->to), snn_proto_name(e->proto), e->step,
                 snn_kind_name(e->kind), (unsigned)e->count);
        if (strlen(head) + 1 + strlen(what) <= 99) printf("%s %s\n", head, what);
        else printf("%s\n             %s\n", head, what);
        ex_values(e->kind, e->v, shown, e->count);
        for (m = 0; m < i; m++) {
            uint64_t sum[EX_MAXV];
            size_t q;
            if (used[m] || !ex_pair(all[m], e)) continue;
            used[m] = used[i] = 1;
            for (q = 0; q < kept; q++) sum[q] = ex_add(e->kind, all[m]->v[q], e->v[q]);
            printf("           together (%s):\n", snn_kind_name(e->kind));
            ex_values(e->kind, sum, shown, e->count);
            if (e->proto == SNN_PROTO_PC && e->step == 3)
                for (q = 0; q + 64 <= kept; q += 64) {
                    size_t z, zeros = 0, at = 0;
                    for (z = 0; z < 64; z++) if (sum[q + z] == 0) { zeros++; at = z; }
                    printf("           element %zu: P2 sees 64 values of Z_67, %s", q / 64 + 1,
                           zeros ? "one of them 0" : "none of them 0: beta' = 0\n");
                    if (zeros) printf(" (at position %zu): beta' = 1\n", at);
                }
            break;
        }
    }
}

/* explain's entry in the command list (and explain --help). */
static const char help_explain[] =
"  explain P [V..] run protocol P (MatMul, SelectShare, PrivateCompare,\n"
"                  ShareConvert, ComputeMSB, DReLU, ReLU, Division, Maxpool,\n"
"                  DMaxpool) on the values V (or a default) across three\n"
"                  processes and tell it step by step (P in any case)\n";

/* The inputs as dealt: each value and its two shares (P2 gets none). */
static void ex_show_inputs(const ex_proto *x, const ex_run *run)
{
    char b1[32], b2[32];
    size_t i, k;
    printf("Inputs: %s.\n", x->args);
    printf("This process deals P0 and P1 additive shares, <v>_0 + <v>_1 = v; P2 gets none:\n");
    for (i = 0; i < run->n; i++) {
        int f, nf = x->proto == SNN_PROTO_MATMUL ? 2 : x->proto == SNN_PROTO_MAXPOOL ? 1 : x->per;
        for (f = 0; f < nf; f++) {
            const uint64_t *s0 = f == 0 ? run->a[0] : f == 1 ? run->b[0] : run->c[0];
            const uint64_t *s1 = f == 0 ? run->a[1] : f == 1 ? run->b[1] : run->c[1];
            int kind = x->proto == SNN_PROTO_MSB ? SNN_KIND_ZLM1 : SNN_KIND_ZL;
            if (x->proto == SNN_PROTO_PC && f > 0) continue;
            if (x->proto == SNN_PROTO_PC) {
                printf("  x = %lld, as its 64 bits shared over Z_67: <x[0..7]>_0 =", (long long)run->in[0][i]);
                for (k = 0; k < 8; k++) printf(" %u", (unsigned)run->bits[0][i * 64 + k]);
                printf(" ...\n%*s<x[0..7]>_1 =", 42, "");
                for (k = 0; k < 8; k++) printf(" %u", (unsigned)run->bits[1][i * 64 + k]);
                printf(" ...\n               r = %lld, beta = %lld (public to P0 and P1)\n",
                       (long long)run->in[1][i], (long long)run->in[2][i]);
                continue;
            }
            ex_fmt(b1, sizeof b1, SNN_KIND_ZL, s0[i]);
            ex_fmt(b2, sizeof b2, SNN_KIND_ZL, s1[i]);
            printf("  %-6s = %-8lld <>_0 = %-18s <>_1 = %-18s (%s)\n",
                   x->proto == SNN_PROTO_MATMUL ? (f ? "y" : "x") : x->proto == SNN_PROTO_SS ?
                   (f == 0 ? "alpha" : f == 1 ? "x" : "y") : x->proto == SNN_PROTO_DIV ? (f ? "y" : "x") :
                   x->proto == SNN_PROTO_DMAXPOOL ? (f ? "n" : "ind") : "a",
                   (long long)run->in[f][i], b1, b2, snn_kind_name(kind));
        }
    }
}

/* The three parties, forked over socketpairs, each running the protocol
 * and writing its report (rep[k]) to a pipe.  0, or -1 with the failure
 * printed; *nkids children to reap. */
static int ex_parties(const opts *o, ex_run *run, ex_report *rep, pid_t pid[SNN_NPARTY], size_t *nkids)
{
    int fds[SNN_NEND][SNN_NEND], pipes[SNN_NPARTY][2], ok = 1;
    size_t k;
    if (snn_socketpair_mesh(fds, SNN_NPARTY) != 0) { PERR("socketpair: %s", strerror(errno)); return -1; }
    for (k = 0; k < SNN_NPARTY; k++) {
        if (pipe(pipes[k]) != 0) { PERR("pipe: %s", strerror(errno)); return -1; }
        pid[k] = fork();
        if (pid[k] < 0) { PERR("fork: %s", strerror(errno)); return -1; }
        if (pid[k] == 0) {
            snn_party p;
            ex_report *r = &rep[k];
            size_t q;
            for (q = 0; q <= k; q++) close(pipes[q][0]);
            snn_socketpair_keep(fds, SNN_NPARTY, (int)k);
            snn_party_init(&p, (int)k, (int)o->timeout * 1000);
            if (snn_connect_fds(&p, fds[k]) == 0 && snn_setup_keys(&p, key_seed(o)) == 0) {
                snn_stats_reset(&p);         /* rounds count from the protocol's first frame */
                if (ex_party(&p, run, r) == 0) r->ok = 1;
            }
            snprintf(r->err, sizeof r->err, "%s", p.errmsg);
            snn_party_close(&p);
            snn_wipe(run, sizeof *run);
            _exit(write(pipes[k][1], r, sizeof *r) == (ssize_t)sizeof *r && r->ok ? 0 : 1);
        }
        close(pipes[k][1]);
        (*nkids)++;
    }
    snn_socketpair_keep(fds, SNN_NPARTY, -1);
    for (k = 0; k < SNN_NPARTY; k++) {
        struct pollfd pf;
        unsigned char *dst = (unsigned char *)&rep[k];
        size_t got = 0;
        while (got < sizeof rep[k]) {
            ssize_t m;
            pf.fd = pipes[k][0]; pf.events = POLLIN; pf.revents = 0;
            if (poll(&pf, 1, (int)o->timeout * 1000) <= 0) break;
            m = read(pipes[k][0], dst + got, sizeof rep[k] - got);
            if (m <= 0) break;
            got += (size_t)m;
        }
        close(pipes[k][0]);
        if (got != sizeof rep[k] || !rep[k].ok) {
            PERR("explain: %s failed: %s", snn_endpoint_name((int)k), got == sizeof rep[k] ? rep[k].err : "no report");
            ok = 0;
        }
    }
    return ok ? 0 : -1;
}

/* The result: the output shares and what they make, beside the
 * plaintext.  Returns whether they match. */
static int ex_result(const ex_proto *x, const ex_run *run, const ex_report rep[SNN_NPARTY])
{
    uint64_t got[EX_MAXN * 2], want[EX_MAXN * 2];
    size_t nout = rep[0].nout, i;
    int out_kind = x->proto == SNN_PROTO_SC ? SNN_KIND_ZLM1 : SNN_KIND_ZL, match = 1;
    char b1[32], b2[32];
    printf("\nResult (%s):\n", x->proto == SNN_PROTO_PC ? "P2's beta', in the clear to P2 only"
                                                       : "P0's and P1's output shares, and what they make");
    for (i = 0; i < nout; i++) {
        got[i] = x->proto == SNN_PROTO_PC ? rep[2].out[i] : ex_add(out_kind, rep[0].out[i], rep[1].out[i]);
        want[i] = ex_plain(run, i);
        if (got[i] != want[i]) match = 0;
        if (x->proto == SNN_PROTO_PC) {
            printf("  element %zu: P2's beta' = %u; plaintext beta XOR (x > r) = %u\n", i + 1,
                   (unsigned)got[i], (unsigned)want[i]);
            continue;
        }
        ex_fmt(b1, sizeof b1, out_kind, rep[0].out[i]);
        ex_fmt(b2, sizeof b2, out_kind, rep[1].out[i]);
        printf("  <>_0 = %-18s <>_1 = %-18s", b1, b2);
        ex_fmt(b1, sizeof b1, out_kind, got[i]);
        ex_fmt(b2, sizeof b2, out_kind, want[i]);
        printf(" -> %-8s plaintext %s%s\n", b1, b2, x->proto == SNN_PROTO_MAXPOOL ? (i ? " (index)" : " (max)")
                                                   : "");
    }
    printf("result:");
    for (i = 0; i < nout; i++) { ex_fmt(b1, sizeof b1, out_kind, got[i]); printf(" %s", b1); }
    printf(" (plaintext:");
    for (i = 0; i < nout; i++) { ex_fmt(b1, sizeof b1, out_kind, want[i]); printf(" %s", b1); }
    printf("): %s\n", match ? "matches" : "DIFFERS");
    return match;
}

/* The protocol named v[0] (any case), or NULL with the error printed. */
static const ex_proto *ex_find(int nv, char **v)
{
    size_t k;
    for (k = 0; k < EX_NPROTO && nv > 0; k++)
        if (name_is(v[0], ex_protos[k].name)) return &ex_protos[k];
    if (nv > 0) PERR("explain: unknown protocol '%s'; name one of MatMul, SelectShare, PrivateCompare, "
                     "ShareConvert, ComputeMSB, DReLU, ReLU, Division, Maxpool or DMaxpool", v[0]);
    else PERR("explain: name a protocol: MatMul, SelectShare, PrivateCompare, ShareConvert, ComputeMSB, "
              "DReLU, ReLU, Division, Maxpool or DMaxpool");
    return NULL;
}

/* The values of the run: v[1..nv-1], or the protocol's defaults; 0, or
 * -1 with the error printed (ex_deal). */
static int ex_values_dealt(ex_run *run, const ex_proto *x, int nv, char **v, snn_prg *g)
{
    char buf[sizeof x->defaults], *dv[EX_MAXN * 3], *t, *save = NULL;
    int nd = 0;
    if (nv > 1) return ex_deal(run, x, nv - 1, v + 1, g);
    memcpy(buf, x->defaults, sizeof buf);
    for (t = strtok_r(buf, " ", &save); t && nd < EX_MAXN * 3; t = strtok_r(NULL, " ", &save)) dv[nd++] = t;
    return ex_deal(run, x, nd, dv, g);
}

/* cmd_explain -- see the section comment.  v[0] is the protocol. */
static int cmd_explain(opts *o, int nv, char **v)
{
    const ex_proto *x;
    ex_run run;
    ex_report *rep = NULL;
    snn_prg g;
    uint8_t key[32];
    int rc = 1;
    pid_t pid[SNN_NPARTY];
    size_t k, nkids = 0;
    const char *s;

    if (!(x = ex_find(nv, v))) return 2;
    /* the dealer's randomness: the OS, or --key-seed */
    if (o->given & OPT_KEYSEED) snn_seed_key(key, o->key_seed, "SNN-explain");
    else if (snn_os_random(key, sizeof key) != 0) { PERR("cannot read the operating system's randomness"); return 1; }
    snn_prg_init(&g, key, 0);
    snn_wipe(key, sizeof key);
    if (ex_values_dealt(&run, x, nv, v, &g) != 0) return 2;
    snn_wipe(&g, sizeof g);
    if (!(rep = calloc(SNN_NPARTY, sizeof *rep))) { PERR("out of memory"); return 1; }

    printf("SecureNN explain: %s\n", x->title);
    printf("P0, P1 and P2 are three processes, joined by socketpairs; each pair of them shares a key\n"
           "(K01, K02, K12) and each has its own stream (Setup step 1, SPEC 1.4).\n\n");
    ex_show_inputs(x, &run);
    printf("\nWhat each party computes, step by step (j = 0 for P0, 1 for P1; [who knows it]):\n");
    for (s = x->steps; *s; ) {
        const char *e = strchr(s, '\n');
        printf("  %.*s\n", (int)(e ? e - s : (long)strlen(s)), s);
        s = e ? e + 1 : s + strlen(s);
    }
    if (x->proto == SNN_PROTO_DIV) printf("  (here l_D = %u)\n", run.ell_d);
    fflush(stdout);

    if (ex_parties(o, &run, rep, pid, &nkids) != 0) goto cleanup;
    printf("\nOn the wire (every frame, in round order; \"together\" is what the two shares make):\n");
    ex_wire(rep);
    for (k = 0; k < SNN_NPARTY; k++)
        if (rep[k].dropped) printf("  (%s sent %zu more frames, not shown)\n", snn_endpoint_name((int)k), rep[k].dropped);
    rc = ex_result(x, &run, rep) ? 0 : 1;
cleanup:
    for (k = 0; k < nkids; k++) waitpid(pid[k], NULL, 0);
    snn_wipe(&run, sizeof run);
    free(rep);
    return rc;
}

/* ---- 16g. keygen and import --------------------------------------------- */

/* keygen's entry in the command list (and keygen --help). */
static const char help_keygen[] =
"  keygen DIR      write the six channel keys for --keys into DIR (one 32-byte\n"
"                  file per pair of P0, P1, P2 and the owner, mode 0600)\n";

/* cmd_keygen -- the `keygen DIR` command: six pair keys for --keys. */
static int cmd_keygen(opts *o, int nop, char **op)
{
    const char *dir = op[0];
    char err[512];
    int a, b;
    (void)o;
    (void)nop;
    if (snn_keygen(dir, err, sizeof err) != 0) {
        PERR("%s", err);
        return 1;
    }
    printf("channel keys written to %s/, mode 0600; give each machine its own three files:\n", dir);
    for (a = 0; a < SNN_NEND; a++) {
        printf("  %-6s", snn_endpoint_name(a));
        for (b = 0; b < SNN_NEND; b++)
            if (b != a) printf(" %s", snn_key_file(a, b));
        printf("\n");
    }
    return 0;
}

/* import's entry in the command list (and import --help). */
static const char help_import[] =
"  import DIR      write the model file --model FILE of network --net from NumPy\n"
"                  .npy files in DIR, layer<n>.weight.npy and layer<n>.bias.npy\n"
"                  for the n-th layer with parameters, in PyTorch's layout\n"
"                  (README: Models from PyTorch or NumPy)\n";

/* cmd_import -- the `import DIR` command: .npy weights into a model file. */
static int cmd_import(opts *o, int nop, char **op)
{
    const char *dir = op[0];
    snn_net net;
    uint64_t *param = NULL;
    char err[4300];
    int rc = 1;
    (void)nop;
    if (!(o->given & OPT_NET) || !o->model) {
        PERR("import: --net A|B|C|D and --model FILE (the model file to write) are required");
        return 2;
    }
    snn_net_init(&net, o->net);
    if (!(param = nn_alloc(net.nparam))) { PERR("out of memory"); return 1; }
    if (snn_model_import(dir, o->net, param, err, sizeof err) != 0
        || snn_model_save(o->model, o->net, param, net.nparam, err, sizeof err) != 0) {
        PERR("%s", err);
        goto cleanup;
    }
    printf("network %s: %zu parameters from %s/layer*.{weight,bias}.npy written to %s\n", snn_net_name(o->net),
           net.nparam, dir, o->model);
    {   /* weights that all round to 0 at f bits make a model that computes nothing */
        size_t l, i, nth = 0;
        for (l = 0; l < net.nlayer; l++) {
            const snn_layer *L = &net.layer[l];
            uint64_t any = 0;
            if (L->kind != SNN_LAYER_FC && L->kind != SNN_LAYER_CONV) continue;
            nth++;
            for (i = 0; i < L->nw; i++) any |= param[L->woff + i];
            if (!any)
                fprintf(stderr, "securenn: import: warning: every weight of layer%zu.weight.npy is 0 at %d fractional "
                        "bits (magnitudes below 2^-%d round to 0): the model's outputs do not depend on its input\n",
                        nth, F, F + 1);
        }
    }
    rc = 0;
cleanup:
    free(param);
    return rc;
}

/* ---- 16h. The command table and main ------------------------------------ */
/*
 * One row per command, as git's commands[] (git.c): its name, operands,
 * the options it accepts, its entry in the command list and its function.
 * The row drives dispatch, the option check and `securenn CMD --help`, so
 * that help and behaviour cannot drift apart.
 */

/* How a command's operands (the words after its name) are read. */
enum { OPERANDS_NONE,     /* none: options only                              */
       OPERANDS_ID,       /* party ID: 0, 1 or 2                             */
       OPERANDS_DIR,      /* one directory, not an option                    */
       OPERANDS_WORDS,    /* explain P V...: every word up to the first --X  */
       OPERANDS_NAMES };  /* bench NAME...: words among the options          */

typedef struct {
    const char *name, *operands;   /* "party", "ID": the usage line          */
    unsigned    options;           /* OPT_ bits it accepts                   */
    const char *help;              /* its entry in the command list          */
    const char *notes;             /* its own entries for options whose
                                    * meaning is its own (CMD --help), or "" */
    int         how;               /* OPERANDS_                              */
    const char *bad;               /* the error for missing operands         */
    int       (*run)(opts *o, int nop, char **op);
} command;

/* The entry of a usage list that starts at line l ("  NAME  text", then
 * lines indented by 18 spaces): printed whole to f (NULL: skipped);
 * returns the line after it. */
static const char *print_entry(FILE *f, const char *l)
{
    do {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) + 1 : strlen(l);
        if (f) fwrite(l, 1, n, f);
        l += n;
    } while (strspn(l, " ") >= 18);
    return l;
}

/* The entry of option `name` in text (the options' or a command's notes),
 * or NULL. */
static const char *find_entry(const char *text, const char *name)
{
    size_t n = strlen(name);
    const char *l;
    for (l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (strncmp(l, "  ", 2) == 0 && strncmp(l + 2, name, n) == 0 && (l[2 + n] == ' ' || l[2 + n] == '\n'))
            return l;
    return NULL;
}

/* securenn --help: the front, each command's entry, the options, notes. */
static void full_help(const command *tab, size_t n)
{
    size_t i;
    fputs(usage_head, stdout);
    for (i = 0; i < n; i++) fputs(tab[i].help, stdout);
    fputs("  help, --help    this text; COMMAND --help: that command and its options\n", stdout);
    fputs(usage_options, stdout);
    fputs(usage_options2, stdout);
    fputs(usage_notes, stdout);
}

/* The bit of the option whose entry starts at l ("  --name ..."), or 0. */
static unsigned entry_bit(const char *l)
{
    size_t t, len = strcspn(l + 2, " \n");
    for (t = 0; t < sizeof opt_table / sizeof opt_table[0]; t++)
        if (strlen(opt_table[t].name) == len && strncmp(opt_table[t].name, l + 2, len) == 0) return opt_table[t].bit;
    return 0;
}

/* securenn CMD --help: its usage line and entry, then the entries of the
 * options its row accepts, in the order of the options' text (its own
 * notes for an option, if it has them, else the general entry). */
static void command_help(const command *c)
{
    const char *text[2], *l;
    size_t part;
    text[0] = usage_options;
    text[1] = usage_options2;
    printf("usage: securenn %s%s%s%s\n\n", c->name, c->operands[0] ? " " : "", c->operands,
           c->options ? " [OPTIONS]" : "");
    fputs(c->help, stdout);
    printf("\nOptions (command: default):\n");
    if (!c->options) printf("  (none)\n");
    for (part = 0; part < 2; part++)
        for (l = text[part]; l && *l; ) {
            if (strncmp(l, "  --", 4) == 0 && (c->options & entry_bit(l))) {
                char name[32];
                const char *own;
                snprintf(name, sizeof name, "%.*s", (int)strcspn(l + 2, " \n"), l + 2);
                own = find_entry(c->notes, name);
                l = print_entry(own ? NULL : stdout, l);      /* the general entry, or skipped */
                if (own) print_entry(stdout, own);
                continue;
            }
            l = strchr(l, '\n');
            if (l) l++;
        }
    printf("\nsecurenn --help lists every command; README.md is the manual.\n");
}

/* The operands of command c in argv (argv[2..]): the index of the first
 * option, or -1 with the error printed. */
static int read_operands(const command *c, opts *o, int argc, char **argv)
{
    int first = 2;
    uint64_t id;
    switch (c->how) {
    case OPERANDS_ID:
        if (argc < 3 || parse_u64(argv[2], 0, SNN_NPARTY - 1, &id) != 0) break;
        o->party_id = (int)id;
        return 3;
    case OPERANDS_DIR:
        if (argc < 3 || argv[2][0] == '-' || (!c->options && argc != 3)) break;
        return 3;
    case OPERANDS_WORDS:   /* the protocol and its values (a minus sign allowed), then options */
        while (first < argc && !(argv[first][0] == '-' && argv[first][1] == '-')) first++;
        return first;
    default:
        return first;
    }
    PERR("%s", c->bad);
    return -1;
}

/* The defaults every command starts from. */
static void opts_init(opts *o, const char *cmd)
{
    memset(o, 0, sizeof *o);
    o->cmd = cmd;
    o->net = SNN_NET_A;
    o->port = 7000;
    o->timeout = 120;
    o->data = "data";
}

/* Whether argv asks for help: a word -h or --help. */
static int asks_help(int argc, char **argv, int from)
{
    int i;
    for (i = from; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    return 0;
}

/* Runs command argv[1] as its row says: exit 0, 1 on failure, 2 on bad
 * usage. */
static int dispatch(const command *tab, size_t n, int argc, char **argv)
{
    const command *c = NULL;
    opts o;
    size_t i;
    int first;
    if (strcmp(argv[1], "help") == 0 || asks_help(2, argv, 1)) {
        full_help(tab, n);
        return 0;
    }
    for (i = 0; i < n && !c; i++)
        if (strcmp(argv[1], tab[i].name) == 0) c = &tab[i];
    if (!c) {
        PERR("unknown command '%s' (see securenn --help)", argv[1]);
        return 2;
    }
    if (asks_help(argc, argv, 2)) {
        command_help(c);
        return 0;
    }
    opts_init(&o, c->name);
    if ((first = read_operands(c, &o, argc, argv)) < 0) return 2;
    if (parse_opts(&o, argc, argv, first, c->options, c->how == OPERANDS_NAMES) != 0 || key_seed_check(&o) != 0)
        return 2;
    return c->run(&o, first - 2, argv + 2);
}

/* import's own entries for the options it requires. */
static const char notes_import[] =
"  --net A|B|C|D   the network of the .npy files (required)\n"
"  --model FILE    the model file to write (required)\n";

/* The short usage of `securenn` alone, on stderr. */
static const char usage_short[] =
"usage: securenn COMMAND [OPTIONS]\n"
"commands: demo, keygen, party, train, infer, import, bench, explain\n"
"securenn --help: every command and option; securenn COMMAND --help: one\n";

/*
 * heap_keep -- glibc gives a freed block of 128 KiB or more back to the
 * kernel (munmap, or trimming the top of the heap), and the next protocol
 * call faults each of its pages in again; in C's training a quarter of the
 * time went to the kernel's page-fault handler.  Every block now comes from
 * the heap and stays there when freed, wiped (every buffer that held a
 * share is wiped before it is freed).  Measured on C's training iteration
 * at batch 128, CPU time of the busiest party: 14.6 s before; 7.7 and 8.3 s
 * with blocks up to 32 MiB kept (glibc's largest mmap threshold); 6.4 and
 * 6.9 s with every block kept, at a peak of 338-436 MiB per party either
 * way.  Other C libraries keep their own policy.
 */
static void heap_keep(void)
{
#if defined(__GLIBC__) && defined(M_MMAP_MAX) && defined(M_TRIM_THRESHOLD)
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
#endif
}

/* The command table, then its dispatch (argc >= 2). */
static int run_command(int argc, char **argv)
{
    /* An automatic array: a static table of pointers would sit in
     * .data.rel.ro, which make check-globals counts as writable. */
    const command commands[] = {
        { "demo", "", OPTS_DEMO, help_demo, "", OPERANDS_NONE, NULL, cmd_demo },
        { "keygen", "DIR", 0, help_keygen, "", OPERANDS_DIR,
          "keygen: one argument, the directory for the keys (see securenn --help)", cmd_keygen },
        { "party", "ID", OPTS_PARTY, help_party, "", OPERANDS_ID,
          "party: the first argument is the party id, 0, 1 or 2", cmd_party },
        { "train", "", OPTS_TRAIN, help_train, "", OPERANDS_NONE, NULL, cmd_train },
        { "infer", "", OPTS_INFER, help_infer, "", OPERANDS_NONE, NULL, cmd_infer },
        { "import", "DIR", OPTS_IMPORT, help_import, notes_import, OPERANDS_DIR,
          "import: the first argument is the directory of .npy files (see securenn --help)", cmd_import },
        { "bench", "[NAME...]", OPTS_BENCH, help_bench, "", OPERANDS_NAMES, NULL, cmd_bench },
        { "explain", "P [V..]", OPTS_EXPLAIN, help_explain, "", OPERANDS_WORDS, NULL, cmd_explain },
    };
    return dispatch(commands, sizeof commands / sizeof commands[0], argc, argv);
}

/* main -- exit 0, 1 on failure, 2 on bad usage. */
int main(int argc, char **argv)
{
    heap_keep();
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fputs(usage_short, stderr);
        return 2;
    }
    return run_command(argc, argv);
}

#endif /* SNN_PROGRAM */
