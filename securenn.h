/*
 * securenn.h -- the one public header of the SecureNN reference implementation.
 *
 * [SNN] S. Wagh, D. Gupta, N. Chandran, "SecureNN: 3-Party Secure Computation
 * for Neural Network Training", PoPETs 2019(3):26-49 (IACR ePrint 2018/442).
 * Algorithm, table and section numbers follow SPEC.md, which this
 * project cites as its specification.
 *
 * Part I, the library a reader of the paper needs:
 *   1. Parameters and compile-time checks
 *   2. Errors, protocol ids, wire element kinds
 *   3. Rings: Z_L (L = 2^64), Z_{L-1}, Z_p (p = 67), fixed point (f = 13)
 *   4. ChaCha20 PRG [RFC8439]                                   (securenn.c)
 *   5. The party and its errors
 *   6. Pairwise keys, sharing and the protocols of [SNN]         (securenn.c)
 *   7. Layers, networks and training                             (nn.c)
 * Part II, running it:
 *   8. Bytes and sizes: the one definition of each
 *   9. The party's definition and its transport state
 *  10. Network: connecting, channels and keys, the message choke point,
 *      counters, operating-system randomness, wiping             (net.c)
 *  11. MNIST data in IDX format                                  (mnist.c)
 *  12. Files, training and inference runs, jobs, transcripts     (nn.c)
 *  13. For the test runner only: test hooks
 *
 * Conventions: every function that talks to peers takes the party first,
 * then outputs, then inputs, then counts.  It returns 0, or -1 with the
 * sticky error in p->err / p->errmsg set; once an error is set every later
 * call returns -1 at once.  P2 passes the same counts as P0 and P1 and NULL
 * for inputs it does not hold.
 */
#ifndef SECURENN_H
#define SECURENN_H

#include <stddef.h>
#include <stdint.h>


/* ######################################################################## */
/* ##  Part I: the library a reader of the paper needs                   ## */
/* ######################################################################## */

/* ==== 1. Parameters ==================================================== */

#define SNN_ELL     64   /* ring bit length l; L = 2^64               */
#define SNN_P       67   /* prime for PrivateCompare bit shares       */
#define SNN_F       13   /* fixed-point fractional bits [SNN, App. A]  */
#define SNN_NPARTY   3   /* P0, P1 (share holders), P2 (helper)        */
#define SNN_CLIENT   3   /* endpoint id of the data/model owner        */
#define SNN_NEND     4   /* endpoints: P0, P1, P2 and the owner        */
#define SNN_LM1 UINT64_MAX /* the modulus L-1 = 2^64 - 1                 */

#define SNN_STATIC_ASSERT(c, name) typedef char snn_assert_##name[(c) ? 1 : -1]
/* [SNN, Alg. 3]: every unmasked c_i lies in [0, l+1]; a non-zero c_i must
 * never vanish mod p, so p > l + 1 (SPEC 2.3, 4.2 f). */
SNN_STATIC_ASSERT(SNN_P > SNN_ELL + 1, prime_exceeds_bitlen);
/* Z_p elements travel as one byte each (SPEC 1.5). */
SNN_STATIC_ASSERT(SNN_P < 256, prime_fits_a_byte);
/* Truncation by f must leave room for the integer part (SPEC 1.3). */
SNN_STATIC_ASSERT(SNN_F > 0 && SNN_F < 32, fixed_point_bits);

/* ==== 2. Errors, protocol ids, element kinds ============================ */

enum snn_err {
    SNN_OK = 0,
    SNN_ERR_ARG,          /* bad argument or configuration            */
    SNN_ERR_NOMEM,        /* allocation failed                        */
    SNN_ERR_IO,           /* socket or file error                     */
    SNN_ERR_ADDR,         /* cannot resolve, bind or listen           */
    SNN_ERR_PEER_CLOSED,  /* a peer closed its connection             */
    SNN_ERR_TIMEOUT,      /* a bounded wait ran out                   */
    SNN_ERR_PROTO,        /* a frame other than the expected one      */
    SNN_ERR_RANGE,        /* a received element outside its ring      */
    SNN_ERR_DATA,         /* a malformed data or model file           */
    SNN_ERR_ABORTED       /* a peer stopped and said why (Setup step 6) */
};

/* Protocol ids.  Every frame carries one, with the step number of the
 * protocol's specification (SPEC section 2) that sends it. */
enum snn_proto {
    SNN_PROTO_SETUP = 0,  /* connection hello and pairwise keys       */
    SNN_PROTO_SHARE,      /* an owner secret-shares its input         */
    SNN_PROTO_REVEAL,     /* shares sent to the party that gets output*/
    SNN_PROTO_MATMUL,     /* Pi_MatMul        [SNN, Alg. 1]           */
    SNN_PROTO_SS,         /* Pi_SelectShare   [SNN, Alg. 2]           */
    SNN_PROTO_PC,         /* Pi_PrivateCompare[SNN, Alg. 3]           */
    SNN_PROTO_SC,         /* Pi_ShareConvert  [SNN, Alg. 4]           */
    SNN_PROTO_MSB,        /* Pi_ComputeMSB    [SNN, Alg. 5]           */
    SNN_PROTO_DRELU,      /* Pi_DReLU         [SNN, Alg. 6]           */
    SNN_PROTO_RELU,       /* Pi_ReLU          [SNN, Alg. 7]           */
    SNN_PROTO_DIV,        /* Pi_Division      [SNN, Alg. 8]           */
    SNN_PROTO_MAXPOOL,    /* Pi_Maxpool       [SNN, Alg. 9]           */
    SNN_PROTO_DMAXPOOL,   /* Pi_DMaxpool      [SNN, Alg. 10]          */
    SNN_PROTO_TEST,       /* messages of the test suite only          */
    SNN_PROTO_COUNT
};

/* What one element of a frame is, and so how it is checked on receipt. */
enum snn_kind {
    SNN_KIND_BYTES = 0,   /* raw bytes (keys)                   1 byte  */
    SNN_KIND_ZL,          /* Z_L element                        8 bytes */
    SNN_KIND_ZLM1,        /* Z_{L-1} element, must be < 2^64-1  8 bytes */
    SNN_KIND_ZP,          /* Z_p element, must be < 67          1 byte  */
    SNN_KIND_BIT,         /* a bit, must be 0 or 1              1 byte  */
    SNN_KIND_COUNT
};

/* ==== 3. Rings ========================================================= */
/* Z_L is native uint64_t arithmetic: wraparound is the reduction mod 2^64.
 * Z_{L-1} and Z_p go only through the helpers below (STYLE 3). */

/* wrap(x, y, L) = 1 iff x + y >= 2^64 over the integers (SPEC 1.2). */
static inline uint64_t snn_wrap(uint64_t x, uint64_t y) { return (uint64_t)(x + y < x); }

/* Z_{L-1}: elements in [0, 2^64-2]; addition with end-around carry. */
static inline uint64_t snn_add_lm1(uint64_t a, uint64_t b)
{
    uint64_t s = a + b;
    if (s < a) s += 1;           /* 2^64 = 1 mod (2^64-1) */
    if (s == SNN_LM1) s = 0;     /* 2^64-1 = 0 mod (2^64-1) */
    return s;
}
/* Reduces any 64-bit value into [0, 2^64-2]. */
static inline uint64_t snn_red_lm1(uint64_t a) { return a == SNN_LM1 ? 0 : a; }
static inline uint64_t snn_neg_lm1(uint64_t a) { return snn_red_lm1(SNN_LM1 - snn_red_lm1(a)); }
static inline uint64_t snn_sub_lm1(uint64_t a, uint64_t b) { return snn_add_lm1(snn_red_lm1(a), snn_neg_lm1(b)); }

/* Z_p, p = 67, elements in [0, 66] held in uint8_t. */
/* v mod p for 0 <= v < 2^16, without a division: q = floor(v m / 2^22) with
 * m = ceil(2^22 / p) = 62602 is floor(v / p) exactly while v (m - 2^22/p) <
 * 2^22/p, i.e. for v < 139,000, and v m < 2^32.  (test.c checks every v
 * against v % p.) */
#define SNN_P_RECIP 62602u
SNN_STATIC_ASSERT(SNN_P == 67, p_recip_is_for_67);
static inline uint8_t snn_mod_p(uint32_t v)
{
    const uint32_t q = (v * SNN_P_RECIP) >> 22;
    return (uint8_t)(v - q * SNN_P);
}
static inline uint8_t snn_add_p(uint8_t a, uint8_t b) { return snn_mod_p((uint32_t)a + b); }
static inline uint8_t snn_sub_p(uint8_t a, uint8_t b) { return snn_mod_p((uint32_t)a + SNN_P - b); }
static inline uint8_t snn_mul_p(uint8_t a, uint8_t b) { return snn_mod_p((uint32_t)a * b); }

/* Signed view s(x) = x - 2^64 if x >= 2^63 (SPEC 1.2), without UB. */
static inline int64_t snn_to_signed(uint64_t x)
{
    return (x >> 63) ? -(int64_t)~x - 1 : (int64_t)x;
}
static inline uint64_t snn_from_signed(int64_t v)
{
    return v < 0 ? (uint64_t)0 - ((uint64_t)(-(v + 1)) + 1) : (uint64_t)v;
}
/* Arithmetic right shift of the signed view, on uint64_t (STYLE 3).
 * Branch-free in x: the sign becomes a mask, never a jump (shares are
 * secret); only the public shift d is tested. */
static inline uint64_t snn_sar(uint64_t x, unsigned d)
{
    uint64_t sign = (uint64_t)0 - (x >> 63);     /* all ones iff s(x) < 0 */
    if (d > 63) return sign;
    return (x >> d) | (sign & ~(SNN_LM1 >> d));  /* d = 0: ~SNN_LM1 = 0 */
}

/* Fixed point, f = 13 (SPEC 1.3 [USE]): v -> round(v * 2^13) mod 2^64. */
uint64_t snn_encode(double v);
double   snn_decode(uint64_t x);

/* ==== 4. ChaCha20 PRG [RFC8439 2.3] ===================================== */

/* The PRG computes SNN_PRG_BLOCKS keystream blocks per refill (one
 * multiple of 4 lets the compiler vectorise them); the stream is the same. */
#define SNN_PRG_BLOCKS 8
#define SNN_PRG_BUF    (64 * SNN_PRG_BLOCKS)

typedef struct {
    uint32_t key[8];
    uint32_t nonce[3];
    uint32_t counter;        /* next block number, a multiple of SNN_PRG_BLOCKS
                              * unless set by hand (test.c)              */
    uint8_t  block[SNN_PRG_BUF]; /* current keystream blocks             */
    unsigned used;           /* bytes of block consumed (SNN_PRG_BUF = empty) */
} snn_prg;

/* Starts a stream from a 256-bit key; stream_id separates streams that
 * share a key.  The 32-bit block counter carries into nonce word 1. */
void     snn_prg_init(snn_prg *g, const uint8_t key[32], uint32_t stream_id);
void     snn_prg_bytes(snn_prg *g, uint8_t *out, size_t n);
uint64_t snn_prg_u64(snn_prg *g);                   /* uniform in Z_L     */
uint64_t snn_prg_lm1(snn_prg *g);                   /* uniform in Z_{L-1} */
uint64_t snn_prg_below(snn_prg *g, uint64_t bound); /* uniform in [0,bound), bound > 0 */
uint8_t  snn_prg_zp(snn_prg *g);                    /* uniform in Z_p     */
uint8_t  snn_prg_zp_star(snn_prg *g);               /* uniform in Z_p \ 0 */
uint8_t  snn_prg_bit(snn_prg *g);                   /* uniform in {0,1}   */
/* A uniform permutation pi of 0..n-1 (Fisher-Yates), n <= 256. */
void     snn_prg_perm(snn_prg *g, uint8_t *pi, size_t n);
/*
 * Bulk forms, for the protocols: out[0..n-1] are exactly the values of n
 * calls of the one-at-a-time sampler above, from exactly the same keystream
 * bytes, leaving the stream at the same place (test.c checks both); they
 * read the keystream in one pass, without a call per byte.
 */
void     snn_prg_u64_n(snn_prg *g, uint64_t *out, size_t n);  /* snn_prg_u64     */
void     snn_prg_lm1_n(snn_prg *g, uint64_t *out, size_t n);  /* snn_prg_lm1     */
void     snn_prg_bit_n(snn_prg *g, uint8_t *out, size_t n);   /* snn_prg_bit     */
/* n uniform values of Z_p (Z_p \ 0), five from each accepted 32-bit word
 * (SPEC 4.5 j): 0.85 (0.91) keystream bytes a value where the byte samplers
 * take 1.27 (1.29).  The _ref forms are the definition, digit by digit with
 * a division; the bulk forms give the same values and stream position. */
void     snn_prg_zp_n(snn_prg *g, uint8_t *out, size_t n);
void     snn_prg_zp_star_n(snn_prg *g, uint8_t *out, size_t n);
void     snn_prg_zp_n_ref(snn_prg *g, uint8_t *out, size_t n);
void     snn_prg_zp_star_n_ref(snn_prg *g, uint8_t *out, size_t n);
/* The reference form of snn_prg_perm: one byte per call of the one-at-a-
 * time reader (test.c checks that snn_prg_perm gives the same). */
void     snn_prg_perm_ref(snn_prg *g, uint8_t *pi, size_t n);
/* Bytes drawn from the stream since snn_prg_init (transcripts). */
uint64_t snn_prg_position(const snn_prg *g);
/* Sets a stream to position pos (bytes from its start, as
 * snn_prg_position gives it): the next byte read is byte pos of the
 * keystream (a resumed training run's rounding stream). */
void     snn_prg_seek(snn_prg *g, uint64_t pos);

/* ==== 5. The party ===================================================== */

/*
 * One party's context: its id (P0, P1, P2, or the owner), the pair streams
 * K01, K02, K12 of SPEC 1.4 (reached through snn_k01 .. snn_k12 below) and
 * its own stream, the sticky error, and its transport (sockets, channels,
 * counters, frame hook), which the protocols reach only through snn_send
 * and snn_recv.  Defined in Part II, section 9.
 */
typedef struct snn_party_ snn_party;

/* Sets the sticky error (first one wins) and returns -1.  The message is
 * prefixed with "P<id>: ". */
int  snn_fail(snn_party *p, enum snn_err e, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Propagates a failure: the success path reads top to bottom. */
#define SNN_GUARD(x) do { if ((x) != 0) goto cleanup; } while (0)

/* ==== 6. Pairwise keys, sharing and protocols (securenn.c) ============== */

/* Pair streams, by the paper's key names (SPEC 1.4).  K01 is only for
 * P0/P1, K02 for P0/P2, K12 for P1/P2.  A party that does not hold the key
 * (or has not set it up) gets NULL and the sticky error SNN_ERR_ARG. */
snn_prg *snn_k01(snn_party *p);
snn_prg *snn_k02(snn_party *p);
snn_prg *snn_k12(snn_party *p);

/* Key setup after connecting (SPEC 1.4 [USE]): each pair of servers gets
 * its own 256-bit key, drawn by the lower id and sent over their channel
 * (Setup step 1); each party gets a private key.  seed == NULL: from the
 * operating system; otherwise everything derives from *seed
 * (reproducible, testing only). */
int  snn_setup_keys(snn_party *p, const uint64_t *seed);
/* Checks the pairwise keys after setup: every stream a party holds must
 * differ from its others, so no party can regenerate another pair's
 * triples (SPEC 4.3 a, 6.5).  0, or -1 with the error set. */
int  snn_check_keys(snn_party *p);

/* owner (P0, P1, P2 or SNN_CLIENT) secret-shares x (held by owner only)
 * to P0 and P1 over Z_L; P0, P1 get their share in out.  Others pass NULL. */
int  snn_share(snn_party *p, int owner, uint64_t *out, const uint64_t *x, size_t n);
/* P0 and P1 send their shares to `to` only; `to` gets the value in out. */
int  snn_reveal(snn_party *p, int to, uint64_t *out, const uint64_t *share, size_t n);
/* Zero-share refresh (SPEC 1.1): P0 adds u, P1 subtracts u, u from K01. */
void snn_refresh(snn_party *p, uint64_t *x, size_t n);

/* Pi_MatMul [SNN, Alg. 1]: W = X (m x n) * Y (n x v), row-major.
 * Transposes select X^T or Y^T as stored (for the backward pass). */
int  snn_matmul(snn_party *p, uint64_t *W, const uint64_t *X, const uint64_t *Y,
                size_t m, size_t n, size_t v, int transpose_x, int transpose_y);
/* The same product in the clear over Z_L (P2's triples, the twin's layers). */
void snn_plain_matmul(uint64_t *W, const uint64_t *X, const uint64_t *Y,
                      size_t m, size_t n, size_t v, int transpose_x, int transpose_y);
/* The element-wise form: z_i = x_i * y_i (used by SS, ReLU, MSB, Div). */
int  snn_mul(snn_party *p, uint64_t *z, const uint64_t *x, const uint64_t *y, size_t n);
/* Local truncation by d bits [SNN, Alg. 11], SecureML style (SPEC 1.3). */
void snn_truncate(snn_party *p, uint64_t *y, const uint64_t *x, size_t n, unsigned d);
/* Pi_SS [SNN, Alg. 2]: z = (1-alpha) x + alpha y, alpha a shared 0/1. */
int  snn_select_share(snn_party *p, uint64_t *z, const uint64_t *alpha,
                      const uint64_t *x, const uint64_t *y, size_t n);
/* Pi_PC [SNN, Alg. 3]: P2 learns beta_prime[e] = beta[e] XOR (x_e > r_e).
 * xbits: n*64 Z_p shares, element e's bit i at xbits[e*64 + i] (i = 0 LSB).
 * r, beta: public to P0 and P1. */
int  snn_private_compare(snn_party *p, uint8_t *beta_prime, const uint8_t *xbits,
                         const uint64_t *r, const uint8_t *beta, size_t n);
/* Pi_PC step 2 on P_j for one element (SPEC 2.3): the shares c_i over Z_p
 * of the comparison of x (x: this party's 64 bit shares, LSB first) with
 * t = r (beta = 0) or r + 1 (beta = 1).  snn_pc_c_ref is the step as
 * written, one reduction per operation; snn_pc_c, which the protocol uses,
 * gives the same c with one reduction per c_i (test.c compares them). */
void snn_pc_c_ref(uint8_t c[SNN_ELL], const uint8_t x[SNN_ELL], uint64_t t, uint8_t beta, uint8_t j);
void snn_pc_c(uint8_t c[SNN_ELL], const uint8_t x[SNN_ELL], uint64_t t, uint8_t beta, uint8_t j);
/* Pi_SC [SNN, Alg. 4]: shares of a over Z_L -> shares over Z_{L-1}. */
int  snn_share_convert(snn_party *p, uint64_t *y, const uint64_t *a, size_t n);
/* Pi_MSB [SNN, Alg. 5]: shares of a over Z_{L-1} -> MSB(a) over Z_L. */
int  snn_compute_msb(snn_party *p, uint64_t *alpha, const uint64_t *a, size_t n);
/* Pi_DReLU [SNN, Alg. 6]: alpha = [s(a) >= 0], for |s(a)| < 2^62. */
int  snn_drelu(snn_party *p, uint64_t *alpha, const uint64_t *a, size_t n);
/* Pi_ReLU [SNN, Alg. 7]: y = max(a, 0); drelu (may be NULL) gets the
 * DReLU shares for the backward pass. */
int  snn_relu(snn_party *p, uint64_t *y, uint64_t *drelu, const uint64_t *a, size_t n);
/* Pi_Div [SNN, Alg. 8, version (a)]: q = floor(x / y), q < 2^ell_d. */
int  snn_division(snn_party *p, uint64_t *q, const uint64_t *x, const uint64_t *y,
                  size_t n, unsigned ell_d);
/* Pi_Maxpool [SNN, Alg. 9]: x holds nwin windows of k contiguous elements;
 * max[w], ind[w] (0-based) per window; ties go to the later element. */
int  snn_maxpool(snn_party *p, uint64_t *max, uint64_t *ind, const uint64_t *x,
                 size_t nwin, size_t k);
/* Pi_DMaxpool [SNN, Alg. 10]: onehot (nwin*k) = e_ind per window; k | 2^64. */
int  snn_dmaxpool(snn_party *p, uint64_t *onehot, const uint64_t *ind, size_t nwin, size_t k);

/* ==== 7. Layers, networks and training (nn.c) =========================== */
/*
 * Layers as forward/backward pairs over shares, the networks A-D of [SNN,
 * App. B] (SPEC 5), training [SNN, App. B] (SPEC 2.12) and the plaintext
 * fixed-point twin (model files, runs and jobs: section 12).  Activations are row-major with the
 * batch first; images and feature maps are NHWC (channels fastest).
 *
 * Every layer and network function takes one context, snn_nn_ctx: with a
 * party it runs on shares at that server, without one it is the plaintext
 * twin, the same integer steps in the clear (exact floor truncation, exact
 * DReLU, division and argmax): the reference of the tests and of --plain.
 */

#define SNN_NN_MAXLAYER 12   /* layers of the largest network (C: 10)      */
#define SNN_NN_IN      784   /* 28 x 28 MNIST pixels                      */
#define SNN_NN_OUT      10   /* classes                                   */

/* The networks of [SNN, App. B] (SPEC 5). */
enum snn_net_id { SNN_NET_A = 0, SNN_NET_B, SNN_NET_C, SNN_NET_D, SNN_NET_COUNT };

enum snn_layer_kind {
    SNN_LAYER_FC = 1,     /* y = trunc(x W) + b          Pi_MatMul      */
    SNN_LAYER_CONV,       /* im2col, then as FC          Pi_MatMul      */
    SNN_LAYER_RELU,       /* y = max(x, 0)               Pi_ReLU        */
    SNN_LAYER_MAXPOOL     /* k x k windows, stride k     Pi_Maxpool     */
};

/* One layer.  Input c x h x w (FC: c features, h = w = 1), output
 * oc x oh x ow, both NHWC.  FC weights are c x oc; convolution weights are
 * (k*k*c) x oc, row (ky, kx, ci); biases oc.  woff/boff locate them in the
 * network's parameter vector. */
typedef struct {
    int    kind;
    size_t c, h, w;
    size_t oc, oh, ow;
    size_t k, stride, pad;   /* filter or window side, stride, zero pad  */
    size_t woff, nw;         /* weights: offset, count                   */
    size_t boff, nb;         /* biases: offset, count                    */
} snn_layer;

/* A network: its layers in order and the size of its parameter vector
 * (each layer's weights, then its biases, layer by layer). */
typedef struct {
    int       id;
    size_t    nlayer;
    snn_layer layer[SNN_NN_MAXLAYER];
    size_t    nparam;
} snn_net;

/* Layer descriptors with woff = 0, boff = nw (snn_net_init relocates). */
void snn_layer_fc(snn_layer *L, size_t in, size_t out);
void snn_layer_conv(snn_layer *L, size_t c, size_t h, size_t w, size_t oc,
                    size_t k, size_t stride, size_t pad);
void snn_layer_relu(snn_layer *L, size_t c, size_t h, size_t w);
void snn_layer_maxpool(snn_layer *L, size_t c, size_t h, size_t w, size_t k);
/* Elements of one sample's input / output of layer L. */
size_t snn_layer_in_size(const snn_layer *L);
size_t snn_layer_out_size(const snn_layer *L);

/* Builds network id (SNN_NET_A..D); -1 for an unknown id. */
int         snn_net_init(snn_net *net, int id);
const char *snn_net_name(int id);               /* "A".."D", or "?"      */
int         snn_net_parse(const char *s);       /* "A"/"a" -> id, or -1  */

/* The twin's truncations: how many, and the sum of |v| / 2^64 over the
 * values v truncated, the expected number of failures had the protocol
 * truncated them (probability about |v| / 2^64 each, SPEC 1.3). */
typedef struct snn_trunc_stats_ {
    uint64_t count;
    double   fail;
} snn_trunc_stats;

/* Per-batch state: act[l] is the input of layer l (batch x in_l),
 * act[nlayer] the logits u (batch x 10); keep[l] what layer l's backward
 * pass needs (ReLU: the DReLU bits; Maxpool: the argmax index); out the
 * ASM output of the last training step (batch x 10). */
typedef struct {
    const snn_net *net;
    size_t    batch;
    uint64_t *act[SNN_NN_MAXLAYER + 1];
    uint64_t *keep[SNN_NN_MAXLAYER];
    uint64_t *out;
} snn_nn_state;
int  snn_nn_state_alloc(snn_nn_state *s, const snn_net *net, size_t batch);
void snn_nn_state_free(snn_nn_state *s);

/* The context of every call below, secure or twin.  p: the executing
 * server (P0, P1 or P2) on shares; NULL: the plaintext twin.  The twin's
 * other fields (NULL when p is set): round, if set, makes every truncation
 * round stochastically from this stream, as the protocol's truncation
 * does (see nn.c sgd_update; NULL: exact floor); trunc, if set, counts
 * every truncation; err (errlen bytes), if set, gets the twin's first
 * error (a party keeps its own, sticky).  A secure call whose party
 * already holds an error returns -1 at once. */
typedef struct {
    snn_party       *p;
    snn_prg         *round;
    snn_trunc_stats *trunc;
    char            *err;
    size_t           errlen;
} snn_nn_ctx;
snn_nn_ctx snn_nn_secure(snn_party *p);
snn_nn_ctx snn_nn_twin(snn_prg *round, snn_trunc_stats *trunc);

/* im2col (SPEC 2.11): x is n x h x w x c (NHWC); cols gets
 * (n*oh*ow) x (k*k*c), row (b, oy, ox), column (ky, kx, ci), zero outside
 * the image.  oh = (h + 2 pad - k) / stride + 1, likewise ow.  Local. */
void snn_im2col(uint64_t *cols, const uint64_t *x, size_t n, size_t c, size_t h, size_t w,
                size_t k, size_t stride, size_t pad);

/* One layer forward over n samples: out (n x out), keep as in snn_nn_state.
 * param is the network's parameter vector. */
int  snn_nn_layer_forward(snn_nn_ctx *c, const snn_layer *L, uint64_t *out, uint64_t *keep,
                          const uint64_t *in, const uint64_t *param, size_t n);
/* One layer backward: dprev (n x in; NULL: not needed) from delta (n x out);
 * FC and convolution also update their parameters in param by SGD,
 * W -= trunc(grad, f + shift), b -= trunc(sum delta, shift), where
 * shift = log2(batch) + log2(1/lr) (SPEC 2.12). */
int  snn_nn_layer_backward(snn_nn_ctx *c, const snn_layer *L, uint64_t *dprev, uint64_t *param,
                           const uint64_t *keep, const uint64_t *in, const uint64_t *delta,
                           size_t n, unsigned shift);

/* The whole network forward on n <= batch samples x (n x 784 shares;
 * P2: NULL); the logits u are left in s->act[s->net->nlayer]. */
int  snn_nn_forward(snn_nn_ctx *c, snn_nn_state *s, const uint64_t *param, const uint64_t *x, size_t n);
/* ASM(u)_i = ReLU(u_i) / (sum_k ReLU(u_k) + 2^-f), in fixed point (n x 10). */
int  snn_nn_asm(snn_nn_ctx *c, uint64_t *q, const uint64_t *u, size_t n);
/* Predicted classes of the last forward: cls[i] = argmax_k u[i][k] via
 * Pi_Maxpool's index (ties to the later class); shares of 0..9. */
int  snn_nn_predict(snn_nn_ctx *c, uint64_t *cls, const snn_nn_state *s, size_t n);
/* One SGD step on a full batch (s->batch samples, a power of two):
 * x (batch x 784), y one-hot in fixed point (batch x 10); the ASM output
 * is left in s->out.  lr = 2^-lr_shift. */
int  snn_nn_train_step(snn_nn_ctx *c, snn_nn_state *s, uint64_t *param, const uint64_t *x,
                       const uint64_t *y, unsigned lr_shift);

/* Bound, in units of 2^-f, on |secure - twin| of every logit for the same
 * parameters and inputs (see nn.c): truncation errors through the layers. */
uint64_t snn_nn_error_bound(const snn_net *net, const uint64_t *param);

/* What the weights allow (see nn.c): the first layer whose bound leaves a
 * protocol's range (-1: none) and why; log2 of the logits' bound; bounds
 * on the expected number of failed local truncations (probability about
 * |v| / 2^64 each, SPEC 1.3) per classified image and per training step
 * of `batch` images. */
typedef struct {
    int    layer;
    char   why[160];
    double logit_log2;
    double fail_infer, fail_step;
} snn_nn_range;
/* 0 if every value the network computes (train: also ASM) stays within
 * the protocols' ranges for any input image, else -1 with r->layer set. */
int snn_nn_check_range(const snn_net *net, const uint64_t *param, size_t batch, int train, snn_nn_range *r);
/* "layer 4 (FC 128 -> 10)": layer l of net, for messages. */
void snn_nn_layer_name(char *buf, size_t n, const snn_net *net, int l);

/* Owner-side encodings, integers only: standardised pixels 4 p/255 - 1/2
 * and one-hot labels in fixed point; weights uniform in +-sqrt(6 / (fan_in + fan_out)) (Glorot),
 * biases 0, drawn from g. */
void snn_nn_encode_images(uint64_t *x, const uint8_t *pixels, size_t n);
void snn_nn_encode_labels(uint64_t *y, const uint8_t *labels, size_t n);
void snn_nn_init_params(const snn_net *net, uint64_t *param, snn_prg *g);


/* ######################################################################## */
/* ##  Part II: running it                                                ## */
/* ######################################################################## */

/* ==== 8. Bytes and sizes: the one definition of each, used by every file */

/* Little-endian loads and stores: the byte order of frames, model files,
 * job blocks and ChaCha20 keys, whatever the host's. */
static inline uint32_t snn_load16_le(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8;
}
static inline uint32_t snn_load32_le(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static inline void snn_store32_le(uint8_t *b, uint32_t x)
{
    b[0] = (uint8_t)x; b[1] = (uint8_t)(x >> 8); b[2] = (uint8_t)(x >> 16); b[3] = (uint8_t)(x >> 24);
}
static inline uint64_t snn_load64_le(const uint8_t *b)
{
    return (uint64_t)snn_load32_le(b) | (uint64_t)snn_load32_le(b + 4) << 32;
}
static inline void snn_store64_le(uint8_t *b, uint64_t x)
{
    snn_store32_le(b, (uint32_t)x);
    snn_store32_le(b + 4, (uint32_t)(x >> 32));
}

/* *out = a * b for a count of elements or bytes; 0, or -1 (*out untouched)
 * if a * b exceeds SIZE_MAX / 16, so that the product may still be scaled
 * to the bytes of 64-bit elements and to a frame with its header. */
static inline int snn_size_mul(size_t *out, size_t a, size_t b)
{
    if (a != 0 && b > ((size_t)-1 / 16) / a) return -1;
    *out = a * b;
    return 0;
}

/* The 256-bit key material of a public seed: the seed's 8 bytes
 * (little-endian), then tag (at most 24 bytes), then zeros.  Reproducible
 * runs only: whoever knows the seed knows the key (--seed, the tests). */
static inline void snn_seed_key(uint8_t key[32], uint64_t seed, const char *tag)
{
    size_t i;
    for (i = 0; i < 32; i++) key[i] = 0;
    snn_store64_le(key, seed);
    for (i = 0; i < 24 && tag[i] != '\0'; i++) key[8 + i] = (uint8_t)tag[i];
}

/* ==== 9. The party's definition and its transport state =============== */

/* Bytes received from one peer and not yet consumed (net.c). */
#define SNN_ARRIVALS 16
typedef struct {
    unsigned char *buf;
    size_t len;              /* bytes held                              */
    size_t cap;
    /* WAN emulation only: when the held bytes were read, as runs of bytes
     * ending at offset arr_end[i], read at arr_us[i] (monotonic
     * microseconds), oldest first */
    size_t   narr;
    size_t   arr_end[SNN_ARRIVALS];
    int64_t  arr_us[SNN_ARRIVALS];
} snn_inbox;

/* WAN emulation (net.c; off when both are 0): a frame is delivered
 * latency_us after it arrives, and the frames from each peer are paced at
 * bytes_per_s (each waits for the link after the previous one). */
typedef struct {
    int64_t  latency_us;
    uint64_t bytes_per_s;
    int64_t  link_free_us[SNN_NEND];   /* when each incoming link is idle */
} snn_wan;

/* Communication counters.  Payload bytes are what [SNN, Table 1] counts
 * (Z_p elements as one byte, SPEC 1.5, 3); frame headers and the channel's
 * own bytes are counted apart. */
typedef struct {
    uint64_t sent[SNN_PROTO_COUNT];   /* payload bytes sent, by protocol */
    uint64_t recv[SNN_PROTO_COUNT];   /* payload bytes received          */
    uint64_t bytes_sent, bytes_recv;  /* payload totals                  */
    uint64_t header_bytes;            /* frame headers sent              */
    uint64_t channel_bytes;           /* channel overhead sent: handshake
                                       * frames, and per sealed frame its
                                       * 4-byte length and 16-byte tag   */
    uint64_t msgs_sent, msgs_recv;
    uint32_t rounds;                  /* highest round stamp seen        */
} snn_stats;

/* What snn_send does with a frame after its hook (fault injection in the
 * test runner; the program never asks for anything but SNN_FRAME_SEND). */
enum snn_frame_action {
    SNN_FRAME_SEND = 0,      /* write header and nbytes of payload       */
    SNN_FRAME_DROP,          /* write nothing: a silent sender           */
    SNN_FRAME_CLOSE          /* close the connection to `to` instead     */
};

/* One frame as the choke point sees it (for counters, transcripts, fault
 * injection).  dir is 0 for a frame being sent, 1 for one received. */
typedef struct {
    int      dir;
    int      from, to;
    int      proto, step, kind;
    uint32_t round;
    size_t   count;          /* elements                                */
    unsigned char *payload;  /* wire bytes; a send hook may change them  */
    size_t   nbytes;         /* a send hook may lower it (never raise)   */
    unsigned char *header;   /* the 16 wire header bytes (net.c); a send
                              * hook may change them                     */
    int      action;         /* enum snn_frame_action; a send hook sets it */
} snn_frame;
struct snn_party_;
typedef void (*snn_hook)(void *ctx, const struct snn_party_ *p, snn_frame *f);

/* The channel to one peer (net.c).  With the pair's pre-shared key, the
 * handshake derives one session key per direction, and from then on every
 * frame is sealed with ChaCha20-Poly1305 [RFC8439 2.8], its nonce the
 * direction's frame counter. */
typedef struct {
    uint8_t  psk[32];              /* the pair's pre-shared key (--keys)  */
    int      have_psk;
    int      sealed;               /* handshake done: every frame sealed  */
    uint8_t  tx_key[32];           /* session key, this party -> peer     */
    uint8_t  rx_key[32];           /* session key, peer -> this party     */
    uint64_t tx_count, rx_count;   /* frames sealed / opened: next nonces */
} snn_channel;

/* Protocol scratch blocks a party keeps (securenn.c, scratch_open): up to
 * SNN_SPARE freed blocks of at most SNN_SPARE_MAX bytes each, so that a
 * protocol call reuses the pages of the last one instead of faulting in
 * fresh ones (at most 16 MiB of blocks per party; more of peak memory, as
 * the heap fragments around them).  All zero, wiped when put back; freed
 * by snn_party_close. */
#define SNN_SPARE     4
#define SNN_SPARE_MAX ((size_t)4 << 20)
typedef struct {
    unsigned char *block[SNN_SPARE];
    size_t    size[SNN_SPARE];
} snn_spares;

/* What a party needs to run the protocols over a network (net.c). */
typedef struct {
    int       fd[SNN_NEND];        /* socket to each endpoint, or -1     */
    int       listen_fd;           /* kept open by P0..P2 for the owner  */
    snn_inbox in[SNN_NEND];
    int       timeout_ms;          /* bound on every wait                */
    uint32_t  round;               /* highest round received (Lamport)   */
    snn_stats stats;
    snn_hook  hook;                /* optional, sees every frame          */
    void     *hook_ctx;
    snn_channel chan[SNN_NEND];    /* chan[k]: the channel to endpoint k  */
    int       keyed;               /* holds channel keys: every channel
                                    * must be sealed                      */
    int       insecure;            /* without keys, peers off loopback are
                                    * allowed in the clear (--insecure)   */
    snn_wan   wan;                 /* WAN emulation, off unless set       */
    int       test_frames;         /* 1: Test frames allowed (the test
                                    * runner only; the program never)     */
} snn_transport;

/* The party (section 5). */
struct snn_party_ {
    int       id;                  /* 0, 1, 2, or SNN_CLIENT             */
    snn_prg   pair[SNN_NEND];      /* pair[k]: stream shared with Pk     */
    int       have_pair[SNN_NEND];
    snn_prg   own;                 /* this party's private stream        */
    enum snn_err err;              /* sticky: the first error wins       */
    char      errmsg[512];
    int       err_from;            /* the peer the error is about, or -1 */
#ifdef SNN_TEST_HOOKS
    unsigned  test_flags;          /* SNN_TEST_* bits (section 13): set by
                                    * the test runner only               */
#endif
    snn_transport net;             /* sockets, channels, counters, hook  */
    snn_spares spare;              /* protocol scratch blocks            */
};

/* ==== 10. Network (net.c) =============================================== */

/* Zeroes p and sets its id and timeout; no sockets yet. */
void snn_party_init(snn_party *p, int id, int timeout_ms);
/* WAN emulation for every frame this party receives (off by default):
 * each is delivered latency_ms after it arrives, and the bytes from each
 * peer are paced at mbytes_per_s (10^6 bytes per second; 0: unpaced).
 * Bytes, rounds and values are unchanged; only time passes. */
void snn_set_wan(snn_party *p, unsigned latency_ms, unsigned mbytes_per_s);
/* Closes every socket, frees inboxes and wipes every key (snn_wipe).  A
 * server whose sticky error is set first tells each peer why, in one
 * Setup step 6 frame (not if the error is a peer's own abort; net.c). */
void snn_party_close(snn_party *p);
/* Channel keys (--keys).  snn_keygen writes one fresh 256-bit key per
 * pair of endpoints into dir (created mode 0700 if absent), from the
 * operating system's randomness, one 32-byte file per pair, mode 0600:
 * p0-p1.key p0-p2.key p1-p2.key p0-owner.key p1-owner.key p2-owner.key.
 * It never overwrites a key.  0, or -1 with a one-line message in err. */
int  snn_keygen(const char *dir, char *err, size_t errlen);
/* The file name of the key of endpoints a and b ("p0-owner.key"). */
const char *snn_key_file(int a, int b);
/* Loads the keys p holds (those of its own pairs; others are not read)
 * from dir and makes p keyed.  A missing, short or long file, or one that
 * group or others may read or write, is an error naming the file. */
int  snn_load_keys(snn_party *p, const char *dir);
/* Sets the key of p's pair with endpoint peer from memory (tests, bench)
 * and makes p keyed. */
void snn_set_channel_key(snn_party *p, int peer, const uint8_t key[32]);
/* The policy without keys: 1 if sockaddr (a struct sockaddr of any
 * family) is on loopback (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) or a
 * local socket; a party without keys talks to no other peer unless
 * p->net.insecure. */
int  snn_is_loopback(const void *sockaddr);

/* Full mesh of P0, P1, P2 over TCP (IPv4 or IPv6).  peers[k] is "host:port"
 * of Pk; party k listens on its own port and connects to lower ids, retrying
 * until the timeout.  Every connection starts with the channel handshake
 * (Setup steps 0, 4, 5; net.c): sealed if p is keyed, refused if the peer
 * disagrees about keys, fails authentication, or (without keys) is not on
 * loopback and p->net.insecure is not set. */
int  snn_connect_tcp(snn_party *p, const char *const peers[SNN_NPARTY]);
/* Pk's listening socket on addr ("host:port"), opened before
 * snn_connect_tcp (which then keeps it) so that a caller can say it
 * listens; 0, or -1 (SNN_ERR_ADDR: cannot resolve, bind or listen). */
int  snn_listen(snn_party *p, const char *addr);
/* The data/model owner (id SNN_CLIENT) connects to P0, P1 and P2 at the
 * same addresses; a server accepts it on the socket it kept listening. */
int  snn_connect_client_tcp(snn_party *p, const char *const peers[SNN_NPARTY]);
int  snn_accept_client(snn_party *p);
/* As snn_accept_client, but the wait for the owner's connection has its
 * own bound: wait_ms milliseconds, 0 for none (its hello is still bounded
 * by the timeout).  SNN_ERR_TIMEOUT: "the owner never connected ...". */
int  snn_accept_owner(snn_party *p, int wait_ms);
/* Uses already connected stream sockets, fd[k] to endpoint k (-1: none);
 * if p is keyed, runs the handshake on each (lower ids first, as TCP). */
int  snn_connect_fds(snn_party *p, const int fd[SNN_NEND]);
/* Socketpairs for all endpoints below nend: fds[i][k] is i's end to k.
 * On failure (-1, errno set) every descriptor it made is closed again. */
int  snn_socketpair_mesh(int fds[SNN_NEND][SNN_NEND], int nend);
/* Closes every descriptor of the mesh that is not endpoint keep's. */
void snn_socketpair_keep(int fds[SNN_NEND][SNN_NEND], int nend, int keep);

/* n bytes from the operating system's randomness source (/dev/urandom):
 * 0, or -1 with errno set.  The one reader of it in the program. */
int  snn_os_random(void *buf, size_t n);
/* Erases n bytes through a volatile pointer (keys, seeds, shares). */
void snn_wipe(void *buf, size_t n);
/* The one policy for secrets in memory: snn_wipe the n bytes at buf, then
 * free it.  NULL is fine.  Every buffer that may hold a share, a key or the
 * owner's data is released through it. */
void snn_free_wiped(void *buf, size_t n);
/* "P0", "P1", "P2" or "owner" for endpoint id (error messages). */
const char *snn_endpoint_name(int id);

/* The ChaCha20 block function [RFC8439 2.3] (net.c, below both the PRG and
 * the channel): out = ChaCha20(key, counter, nonce), one block as words;
 * snn_chacha20_blocks: SNN_PRG_BLOCKS consecutive blocks counter,
 * counter + 1, ... as little-endian bytes, a block number that wraps past
 * 2^32 - 1 carrying into nonce word 1 (see snn_prg_init).  Byte for byte
 * the same keystream (test.c). */
void snn_chacha20_block(uint32_t out[16], const uint32_t key[8], uint32_t counter, const uint32_t nonce[3]);
void snn_chacha20_blocks(uint8_t out[SNN_PRG_BUF], const uint32_t key[8], uint32_t counter,
                         const uint32_t nonce[3]);

/* The channel's cryptography (net.c), beside the frames it protects.
 * Poly1305 [RFC8439 2.5]: a 16-byte tag of m (n bytes) under a one-time
 * 32-byte key (r | s). */
void snn_poly1305(uint8_t tag[16], const uint8_t key[32], const uint8_t *m, size_t n);
/* AEAD_CHACHA20_POLY1305 [RFC8439 2.8]: 32-byte key, 12-byte nonce, aad of
 * na bytes, message of n bytes; c (n bytes, may be m) and a 16-byte tag. */
void snn_aead_seal(uint8_t *c, uint8_t tag[16], const uint8_t key[32], const uint8_t nonce[12],
                   const uint8_t *aad, size_t na, const uint8_t *m, size_t n);
/* The inverse: 0 and m (may be c) if the tag is right, else -1, m untouched. */
int  snn_aead_open(uint8_t *m, const uint8_t key[32], const uint8_t nonce[12],
                   const uint8_t *aad, size_t na, const uint8_t *c, size_t n, const uint8_t tag[16]);
/* The session key for frames from endpoint `from` to `to`: a ChaCha20
 * cascade PRF of the pair's pre-shared key and the two 12-byte handshake
 * nonces (formula at its definition in net.c). */
void snn_channel_kdf(uint8_t out[32], const uint8_t psk[32], int from, int to,
                     const uint8_t n_init[12], const uint8_t n_resp[12]);

/* The one place every frame passes: framing, checks, counters, hook.
 * count elements of the given kind; the receiver requires the exact
 * sender, protocol, step, kind and count, and checks every element's range. */
int  snn_send(snn_party *p, int to, int proto, int step, int kind, const void *x, size_t count);
int  snn_recv(snn_party *p, int from, int proto, int step, int kind, void *x, size_t count);
/* Typed forms: Z_L and Z_{L-1} as uint64_t, Z_p and bits as uint8_t. */
#define snn_send_zl(p, to, pr, st, x, n)    snn_send((p), (to), (pr), (st), SNN_KIND_ZL, (x), (n))
#define snn_recv_zl(p, fr, pr, st, x, n)    snn_recv((p), (fr), (pr), (st), SNN_KIND_ZL, (x), (n))
#define snn_send_lm1(p, to, pr, st, x, n)   snn_send((p), (to), (pr), (st), SNN_KIND_ZLM1, (x), (n))
#define snn_recv_lm1(p, fr, pr, st, x, n)   snn_recv((p), (fr), (pr), (st), SNN_KIND_ZLM1, (x), (n))
#define snn_send_zp(p, to, pr, st, x, n)    snn_send((p), (to), (pr), (st), SNN_KIND_ZP, (x), (n))
#define snn_recv_zp(p, fr, pr, st, x, n)    snn_recv((p), (fr), (pr), (st), SNN_KIND_ZP, (x), (n))

const char *snn_proto_name(int proto);
const char *snn_kind_name(int kind);
/* What a frame (proto, step, kind) carries, from the message inventory at
 * the top of net.c; NULL if the inventory has no such message.  A frame
 * not in the inventory is never sent or accepted. */
const char *snn_step_name(int proto, int step, int kind);
/* Zeroes the counters and the round clock (used around a measured call;
 * all three parties must do it at the same point). */
void snn_stats_reset(snn_party *p);

/* ==== 11. MNIST (mnist.c) ================================================ */

/* One MNIST-format data set held in memory. */
typedef struct {
    size_t   n;       /* number of images                        */
    size_t   rows;    /* 28                                      */
    size_t   cols;    /* 28                                      */
    uint8_t *images;  /* n*rows*cols pixels, row-major, 0..255   */
    uint8_t *labels;  /* n labels, each 0..9                     */
} snn_mnist;

/* Loads a pair of IDX files; -1 with a one-line message in err. */
int  snn_mnist_load_files(snn_mnist *d, const char *images_path, const char *labels_path,
                          char *err, size_t errlen);
/* Loads split "train" (train-*) or "test" (t10k-*) from directory dir. */
int  snn_mnist_load(snn_mnist *d, const char *dir, const char *split, char *err, size_t errlen);
void snn_mnist_free(snn_mnist *d);

/* ==== 12. Files, training and inference runs, jobs, transcripts (nn.c) == */

/* Model files (format in nn.c): network id and the parameter vector. */
typedef struct {
    int       net;
    size_t    n;
    uint64_t *param;
} snn_model;
/* want_net: the network the caller expects, or -1 for any.  Returns 0, or
 * -1 with a one-line message in err. */
int  snn_model_save(const char *path, int net, const uint64_t *param, size_t n, char *err, size_t errlen);
/* 0 if a model (or a checkpoint's temporary file) can be written at path,
 * checked before a job starts: an existing file is opened for update and
 * left as it is, an absent one created and removed.  Else -1 with
 * "PATH cannot be written: REASON" in err. */
int  snn_model_writable(const char *path, char *err, size_t errlen);
int  snn_model_load(snn_model *m, const char *path, int want_net, char *err, size_t errlen);
void snn_model_free(snn_model *m);

/* A checkpoint file (format in nn.c, section 13): the owner's weights after
 * `done` of `iters` training steps and what continuing the run needs.  All
 * of it is the owner's (the seed fixes its initial weights and batch
 * order): keep it as private as a model. */
typedef struct {
    int       net;            /* SNN_NET_A..C                              */
    int       secure;         /* 1: saved by a secure run; 0: by the twin  */
    size_t    batch;          /* images per step, a power of two <= 256    */
    size_t    iters, done;    /* steps of the whole run; done, 1..iters-1  */
    size_t    lr_step;        /* the schedule: snn_lr_shift_at(lr_shift,   */
    unsigned  lr_shift;       /*   lr_step, step), lr = 2^-shift           */
    uint64_t  seed;           /* the owner's seed (weights, batch order)   */
    uint64_t  round_pos;      /* twin: its rounding stream's position; 0   */
    uint64_t  data_n;         /* the training set: its image count and     */
    uint64_t  data_hash;      /*   snn_labels_hash of its labels           */
    size_t    every;          /* the checkpoint period that saved it, 1..iters-1 */
    size_t    report;         /* its progress period (--every), 0: none    */
    size_t    n;              /* parameters (the network's nparam)         */
    uint64_t *param;
} snn_ckpt_file;
/* FNV-1a 64 of a training set's labels: a checkpoint names its data. */
uint64_t snn_labels_hash(const snn_mnist *d);
/* Writes c's fields with the weights param (c->n of them; c->param is not
 * read) to path.tmp, then renames it over path, so that a crash leaves the
 * previous checkpoint whole.  0, or -1 with a one-line message. */
int  snn_ckpt_save(const char *path, const snn_ckpt_file *c, const uint64_t *param, char *err, size_t errlen);
/* Reads and checks a checkpoint (magic, version, fields in range, exact
 * size, checksum).  0 with c->param allocated (snn_ckpt_free), or -1 with
 * a one-line message. */
int  snn_ckpt_load(snn_ckpt_file *c, const char *path, char *err, size_t errlen);
/* Wipes and frees c->param and wipes the rest of c (the seed); c may be
 * all zero, or a failed load. */
void snn_ckpt_free(snn_ckpt_file *c);

/* A NumPy .npy file (mnist.c; format 1.0-3.0, numpy/lib/format.py): little-
 * endian float32 ('<f4') or float64 ('<f8'), C order, at most 4 dimensions,
 * the data filling the file exactly.  0 with *out (malloc'd, free it) the
 * values as double, shape[0..*ndim-1]; or -1 and a one-line message. */
int  snn_npy_load(const char *path, double **out, size_t shape[4], size_t *ndim, char *err, size_t errlen);
/* Imports network net's parameters (net.nparam of them, into param) from
 * directory dir: for the n-th layer with parameters (FC or convolution,
 * n = 1, 2, ...) dir/layer<n>.weight.npy and dir/layer<n>.bias.npy in
 * PyTorch's layout: FC weights (out, in), the input of an FC that follows
 * a convolution flattened channel first (c, y, x); convolution weights
 * (out, in, k, k); biases (out,).  Values become fixed point (snn_encode);
 * each must be finite and below 2^40 in magnitude.  0, or -1 and a
 * one-line message naming the file and the layer (a wrong shape: the
 * shape it needs and the one it has). */
int  snn_model_import(const char *dir, int net, uint64_t *param, char *err, size_t errlen);

/* Training progress, computed by the owner from the ASM outputs revealed to
 * it (the twin: from its own): since the previous report. */
typedef struct {
    size_t   iter, iters;     /* iterations done, of iters                 */
    size_t   start;           /* iterations done before this run (resumed) */
    size_t   seen, correct;   /* samples, and those whose argmax was right */
    uint64_t sqerr;           /* sum of sum_k (q_k - y_k)^2, 2f fractional bits */
    uint64_t bytes;           /* payload bytes among the servers so far    */
} snn_progress;
typedef void (*snn_progress_fn)(void *ctx, const snn_progress *pr);

/* The learning-rate shift of training step it (from 0): lr_shift +
 * floor(it / lr_step), a step schedule; lr_step = 0: constant. */
unsigned snn_lr_shift_at(unsigned lr_shift, size_t lr_step, size_t it);

/* After each step of a training run: `done` steps of the whole run of
 * `iters` are done; the weights (the network's nparam, Z_L) and the twin's
 * rounding stream (NULL in a secure run).  Returns 0 to go on, or -1 with
 * a one-line reason in err (errlen bytes) to stop the run. */
typedef int (*snn_step_fn)(void *ctx, size_t done, size_t iters, const uint64_t *param, const snn_prg *round,
                           char *err, size_t errlen);

/*
 * Checkpoints: a long training run saves the owner's weights every `every`
 * steps and can continue from them.  save is called once `done` steps of
 * the whole run are done, for every multiple done of `every` with start <
 * done < iters (the final weights are the run's result, not a checkpoint),
 * with the weights and the twin's rounding stream (NULL in a secure run);
 * it returns 0, or -1 with a one-line reason in err to stop the run.
 * snn_ckpt_step is the after-step callback (snn_step_fn) that does this,
 * with ctx a snn_ckpt.
 */
typedef int (*snn_ckpt_fn)(void *ctx, size_t done, const uint64_t *param, const snn_prg *round, char *err,
                           size_t errlen);
typedef struct {
    size_t      every;        /* save every so many steps; 0: never        */
    snn_ckpt_fn save;         /* may be NULL if every = 0                  */
    void       *ctx;
} snn_ckpt;
int  snn_ckpt_step(void *ck, size_t done, size_t iters, const uint64_t *param, const snn_prg *round, char *err,
                   size_t errlen);

/* A training run of the twin.  Learning rate 2^-shift with shift =
 * snn_lr_shift_at(lr_shift, lr_step, step).  start: steps already done (a
 * resumed run), so the run replays the batch order of steps 0 .. start-1
 * from the order stream without using them, and continues at step start
 * with the schedule of step start (round must then stand where the
 * checkpoint's run left it). */
typedef struct {
    size_t          batch, iters;  /* images per step; steps of the whole run */
    unsigned        lr_shift;
    size_t          lr_step;       /* 0: a constant rate                    */
    size_t          start;         /* 0: a new run                          */
    snn_prg        *order;         /* the owner's batch order stream        */
    snn_prg        *round;         /* stochastic SGD rounding (see
                                    * snn_nn_ctx), or NULL: exact floor     */
    size_t          every;         /* progress every so many steps; 0: none */
    snn_progress_fn progress;      /* may be NULL                           */
    void           *progress_ctx;
    snn_step_fn     after_step;    /* after every step (e.g. snn_ckpt_step),
                                    * or NULL                               */
    void           *step_ctx;
} snn_train_cfg;

/* The twin's training and inference on MNIST, batches exactly as the owner
 * makes them (same order stream, same batches).  Return 0, or -1 with the
 * reason (out of memory, a bad size or shape, a failed save) in err
 * (errlen bytes; errlen 0: none). */
int  snn_plain_train(const snn_net *net, uint64_t *param, const snn_mnist *d, const snn_train_cfg *cfg,
                     char *err, size_t errlen);
int  snn_plain_infer(const snn_net *net, const uint64_t *param, const snn_mnist *d, size_t n,
                     size_t batch, uint64_t *pred, char *err, size_t errlen);

/* A job: the public parameters the owner sends to the three servers. */
enum { SNN_JOB_TRAIN = 1, SNN_JOB_INFER = 2 };
#define SNN_JOB_BYTES 48
typedef struct {
    uint32_t cmd;             /* SNN_JOB_TRAIN and/or SNN_JOB_INFER        */
    uint32_t net;             /* SNN_NET_A..D (D: inference only)          */
    uint32_t batch;           /* power of two, 1..256                      */
    uint32_t iters;           /* training steps                            */
    uint32_t lr_shift;        /* learning rate 2^-lr_shift                 */
    uint32_t n_infer;         /* images to classify                        */
    uint32_t report;          /* progress every so many steps; 0: none     */
    uint32_t lr_step;         /* lr_shift grows by 1 every so many steps;
                               * 0: constant (snn_lr_shift_at)             */
    uint32_t start;           /* first training step (a resumed run), < iters */
    uint32_t checkpoint;      /* weights to the owner every so many steps;
                               * 0: only at the end                        */
} snn_job;
/* 0 if every field is in range, else -1 and a one-line message. */
int  snn_job_check(const snn_job *j, char *err, size_t errlen);

/* What the owner gives and gets in one job. */
typedef struct {
    const snn_mnist *train;   /* training: the data                        */
    snn_prg         *order;   /* training: batch order stream              */
    const snn_mnist *test;    /* inference: classifies its first n_infer   */
    uint64_t        *param;   /* in: initial weights / model; out: trained */
    uint64_t        *pred;    /* out: n_infer predicted classes            */
    uint64_t         infer_bytes;  /* out: servers' traffic in inference   */
    snn_progress_fn  progress;     /* may be NULL                          */
    void            *ctx;
    /* inference: called with 0 as it starts, then after each batch with
     * the images classified so far, and n_infer (ctx as above); may be NULL */
    void           (*infer_progress)(void *ctx, size_t done, size_t n);
    /* training: with job->checkpoint, called as snn_ckpt.save (round NULL)
     * with the weights revealed at each checkpoint; needed then */
    snn_ckpt_fn      checkpoint;
    void            *checkpoint_ctx;
} snn_owner_io;

/* A transcript: one party's view written to a file, frame by frame (the
 * format is in nn.c, section 15).  Install it with snn_transcript_open
 * after snn_party_init (append: add to the file rather than replace it);
 * snn_transcript_close writes the totals and removes
 * the hook (close in the reverse order of opening, as for any hook).
 * Writing it changes nothing that is computed or sent.  Both return 0, or
 * -1 and a one-line message in err. */
typedef struct {
    uint64_t frames, sent, recv, rounds;
    uint64_t drawn[4];            /* bytes from K01, K02, K12, own      */
} snn_tr_sum;
typedef struct {
    void       *f;                /* FILE *                             */
    snn_party  *p;
    snn_hook    prev;             /* the hook it chains to              */
    void       *prev_ctx;
    uint64_t    pos[4];           /* stream positions at the last frame */
    int         call_proto;       /* the call in progress, or -1        */
    uint32_t    call_lo, call_hi, max_round;
    snn_tr_sum  call, sum[SNN_PROTO_COUNT];
} snn_transcript;
int  snn_transcript_open(snn_transcript *t, snn_party *p, const char *path, int append, char *err,
                         size_t errlen);
int  snn_transcript_close(snn_transcript *t, char *err, size_t errlen);

/* A server (P0, P1 or P2) runs one job of the connected owner:
 * snn_nn_recv_job (the job block, checked), then snn_nn_run_job. */
int  snn_nn_serve(snn_party *p);
int  snn_nn_recv_job(snn_party *p, snn_job *job);
int  snn_nn_run_job(snn_party *p, const snn_job *job);
/* The owner (connected, private stream set) runs one job on the servers. */
int  snn_nn_owner(snn_party *o, const snn_job *job, snn_owner_io *io);

/* ==== 13. For the test runner only: test hooks ========================== */

/*
 * Test hooks (snn_party.test_flags).  Each removes or weakens one
 * security-relevant step, so that the test runner can run the weakened
 * protocol and show that its view tests and recovery search notice.  Only
 * test.c sets them, and the code that obeys them is compiled only into the
 * test runner (-DSNN_TEST_HOOKS): ./securenn has neither the flags nor
 * the names (make check-hooks).  README "Deliberate breaks" lists each
 * with the tests that catch it.
 */
#ifdef SNN_TEST_HOOKS
enum {
    SNN_TEST_PC_NO_PERM     = 1u << 0, /* Pi_PC step 3: pi is the identity       */
    SNN_TEST_PC_NO_MASK     = 1u << 1, /* Pi_PC step 3: the zero-share m_k is 0  */
    SNN_TEST_SC_R_ZERO      = 1u << 2, /* Pi_SC: the first (r_0, r_1) drawn for
                                        * each element has r = 0, which the
                                        * resampling must reject             */
    SNN_TEST_SC_NO_RESAMPLE = 1u << 3, /* Pi_SC: r is not resampled, so with
                                        * SNN_TEST_SC_R_ZERO, r = 0          */
    SNN_TEST_SWAP_PAIRS     = 1u << 4, /* this party's pair streams swapped:
                                        * P0 K01<->K02, P1 K01<->K12, P2 K02<->K12 */
    SNN_TEST_SHARE_NO_MASK  = 1u << 5, /* Share step 1: the owner's s_0 = 0      */
    SNN_TEST_MM_NO_MASK     = 1u << 6, /* Pi_MatMul step 1: U = V = 0 (all three) */
    SNN_TEST_NO_REFRESH     = 1u << 7, /* every zero-share refresh of output
                                        * shares (snn_refresh; Pi_SC step 5's u,
                                        * Pi_Div step 1's w_i) left out      */
    SNN_TEST_PC_NO_BLIND    = 1u << 8, /* Pi_PC step 3: s_i = 1                 */
    SNN_TEST_PC_NO_U        = 1u << 9, /* Pi_PC step 2, r = 2^l - 1: u_i = 0     */
    SNN_TEST_SC_ETA_ZERO    = 1u << 10, /* Pi_SC: eta'' = 0                     */
    SNN_TEST_MSB_BETA_ZERO  = 1u << 11, /* Pi_MSB step 3: beta = 0              */
    SNN_TEST_MSB_X_ZERO     = 1u << 12, /* Pi_MSB step 1: P2's x = 0            */
    SNN_TEST_DEAL_NO_MASK   = 1u << 13, /* P2 deals its shares with P0's = 0
                                        * (Pi_SC steps 2, 4; Pi_MSB steps 1, 4;
                                        * Pi_DMaxpool step 3)                */
    SNN_TEST_DMP_NO_R       = 1u << 14, /* Pi_DMaxpool step 2: r = 0            */
    SNN_TEST_RECV_NO_RANGE  = 1u << 15  /* snn_recv: no ring check of elements  */
};

/* Whether test hook f is on for p.  -DSNN_TEST_FORCE=F also turns hooks F
 * on for every party, to check by hand that the suite catches each removal. */
#ifndef SNN_TEST_FORCE
#define SNN_TEST_FORCE 0u
#endif
#define SNN_TEST_ON(p, f) ((((unsigned)(p)->test_flags | (unsigned)(SNN_TEST_FORCE)) & (unsigned)(f)) != 0)
#endif /* SNN_TEST_HOOKS */

#endif /* SECURENN_H */
