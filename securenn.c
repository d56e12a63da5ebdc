/*
 * securenn.c -- rings, the ChaCha20 PRG, sharing, and every protocol of
 * [SNN] (Wagh, Gupta, Chandran, PoPETs 2019(3) / ePrint 2018/442), in the
 * order of the paper.  Step numbers are those of SPEC.md, section 2.
 *
 * Sections (bottom-up: primitives before their users):
 *   1. Fixed point                       [SNN, App. A], SPEC 1.3
 *   2. ChaCha20 and the PRG              [RFC8439 2.3], SPEC 1.4
 *   3. Pair streams, sharing, reveal, zero-share refresh   SPEC 1.1
 *  3b. Pairwise and private keys         SPEC 1.4 [USE]
 *   4. Pi_MatMul and local truncation    [SNN, Alg. 1, Alg. 11]
 *   5. Pi_SelectShare                    [SNN, Alg. 2]
 *   6. Pi_PrivateCompare                 [SNN, Alg. 3]
 *   7. Pi_ShareConvert                   [SNN, Alg. 4]
 *   8. Pi_ComputeMSB                     [SNN, Alg. 5]
 *   9. Pi_DReLU, Pi_ReLU                 [SNN, Alg. 6, 7]
 *  10. Pi_Division                       [SNN, Alg. 8 (a)]
 *  11. Pi_Maxpool, Pi_DMaxpool           [SNN, Alg. 9, 10]
 *
 * Who knows what: comments mark each value with the parties that hold it,
 * e.g. [P0,P1].  No function branches or indexes on a share.
 *
 * Deviations from the paper's listings (each also in its function's header
 * block and in README "Deviations and errata"):
 *   - Alg. 1: only P1 subtracts E.F (the WP listing has both; SPEC 4.1).
 *   - Alg. 3: the beta = 0 sign, t = r + 1 for beta = 1, and the
 *     r = 2^64 - 1 case (SPEC 2.3, 4.1); and a Z_p zero-share added to the
 *     permuted d so that P2 never sees one party's s_i c_i^j alone (SPEC
 *     4.5 a, not in [SNN]: without it P2 can recover r inside Pi_SC and
 *     Pi_MSB).
 *   - Alg. 4: the final formula (PC on r - 1, eta = eta' XOR eta'') and r
 *     sampled non-zero (SPEC 4.1, 4.2 a-b).
 *   - Alg. 5: output over Z_L through one MatMul (SPEC 4.1).
 *   - Alg. 8: version (a), long division (SPEC 2.8).
 *   - Alg. 9: ties go to the later element (SPEC 2.9, 4.1).
 *   - Alg. 10: windows must be powers of two (n | 2^64).
 *   - Bits are 0/1 integers and only fixed x fixed products are truncated
 *     (SPEC 1.3 [USE]).
 *   - Alg. 1: P1 receives Z_1 after it sends E_1, F_1, so a product
 *     (MatMul, SelectShare) takes 1 round, not Table 1's 2 (SPEC 4.5 i).
 *     ReLU and Division take 9 and 9 ell_d rounds, not 10 and 10 ell_d,
 *     as P2 deals the product's triple with DReLU's last frame (measured
 *     critical path, net.c; SPEC 3, 4.5 c).
 *   - Vectors of Z_p are drawn five values to a 32-bit word (SPEC 4.5 j).
 *   - Each key drives one running stream (SPEC 4.5 e; SPEC 1.4 [USE] suggests a
 *     sub-stream per (protocol, call)).  Both holders draw the same counts
 *     in the same order, which every protocol's public sizes fix; a
 *     difference would give wrong outputs, which the tests would show,
 *     and reveals nothing.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "securenn.h"

/* ==== 1. Fixed point [SNN, App. A], SPEC 1.3 ============================ */

/*
 * snn_encode -- v -> round(v * 2^f) mod 2^64 (SPEC 1.3 [USE]).
 * Only for inputs and display: no computation on shares uses floats.
 * |v| must be below 2^50 so the product stays exact in a double.
 */
uint64_t snn_encode(double v)
{
    return snn_from_signed((int64_t)llround(v * (double)(1u << SNN_F)));
}

/* snn_decode -- the real value of a fixed-point ring element. */
double snn_decode(uint64_t x)
{
    return (double)snn_to_signed(x) / (double)(1u << SNN_F);
}

/* ==== 2. ChaCha20 and the PRG [RFC8439 2.3], SPEC 1.4 ==================== */
/* The block function itself is in net.c, the lowest layer, which the
 * channel uses too (snn_chacha20_block, and snn_chacha20_blocks for
 * several blocks side by side). */

/*
 * snn_prg_init -- a keystream from a 256-bit key.  Nonce word 0 holds
 * stream_id, so streams under one key never overlap; words 1-2 start at 0
 * and word 1 takes the carry of the 32-bit block counter, so a stream runs
 * for 2^64 blocks rather than the 2^32 of one RFC 8439 nonce.
 */
void snn_prg_init(snn_prg *g, const uint8_t key[32], uint32_t stream_id)
{
    int i;
    for (i = 0; i < 8; i++) g->key[i] = snn_load32_le(key + 4 * i);
    g->nonce[0] = stream_id;
    g->nonce[1] = 0;
    g->nonce[2] = 0;
    g->counter = 0;
    g->used = SNN_PRG_BUF;
}

/* The next SNN_PRG_BLOCKS blocks of the stream into g->block. */
static void prg_refill(snn_prg *g)
{
    snn_chacha20_blocks(g->block, g->key, g->counter, g->nonce);
    if (g->counter > UINT32_MAX - SNN_PRG_BLOCKS) g->nonce[1]++;   /* carry: see snn_prg_init */
    g->counter += SNN_PRG_BLOCKS;
    g->used = 0;
}

/* snn_prg_bytes -- the next n bytes of the keystream. */
void snn_prg_bytes(snn_prg *g, uint8_t *out, size_t n)
{
    while (n > 0) {
        size_t take;
        if (g->used == SNN_PRG_BUF) prg_refill(g);
        take = SNN_PRG_BUF - g->used;
        if (take > n) take = n;
        memcpy(out, g->block + g->used, take);
        g->used += (unsigned)take;
        out += take;
        n -= take;
    }
}

/* The next keystream byte: the one-at-a-time reader of the reference
 * samplers below. */
static uint8_t prg_byte(snn_prg *g)
{
    if (g->used == SNN_PRG_BUF) prg_refill(g);
    return g->block[g->used++];
}

/* snn_prg_u64 -- uniform in Z_L: eight bytes, little-endian. */
uint64_t snn_prg_u64(snn_prg *g)
{
    uint8_t b[8];
    if (g->used <= SNN_PRG_BUF - 8) {          /* the common case: no refill inside */
        const uint64_t x = snn_load64_le(g->block + g->used);
        g->used += 8;
        return x;
    }
    snn_prg_bytes(g, b, 8);
    return snn_load64_le(b);
}

/* snn_prg_lm1 -- uniform in Z_{L-1}: reject 2^64-1 (SPEC 1.4). */
uint64_t snn_prg_lm1(snn_prg *g)
{
    uint64_t x;
    do x = snn_prg_u64(g); while (x == SNN_LM1);
    return x;
}

/*
 * snn_prg_below -- uniform in [0, bound) by rejection: accept x only below
 * the largest multiple of bound that fits in 2^64, then reduce.
 */
uint64_t snn_prg_below(snn_prg *g, uint64_t bound)
{
    uint64_t lim, x;
    assert(bound > 0);                   /* securenn.h: bound > 0 */
    lim = SNN_LM1 - (SNN_LM1 % bound + 1) % bound;           /* 2^64 - (2^64 mod bound) - 1 */
    do x = snn_prg_u64(g); while (x > lim);
    return x % bound;
}

/*
 * The one-at-a-time samplers of Z_p (SPEC 1.4): one byte per try, rejected
 * if >= 201 = 3 * 67 so that the 201 accepted bytes fall on each residue
 * three times.  They draw single values (explain's dealing, the tests); the
 * protocols draw vectors, five values to a word (snn_prg_zp_n below).
 */

/* snn_prg_zp -- uniform in Z_p. */
uint8_t snn_prg_zp(snn_prg *g)
{
    uint8_t b;
    do b = prg_byte(g); while (b >= (256 / SNN_P) * SNN_P);
    return (uint8_t)(b % SNN_P);
}

/* snn_prg_zp_star -- uniform in Z_p \ {0}. */
uint8_t snn_prg_zp_star(snn_prg *g)
{
    uint8_t b;
    /* One byte per try: the bytes and values of drawing snn_prg_zp until
     * it is non-zero, without the nested loop */
    do b = prg_byte(g); while (b >= (256 / SNN_P) * SNN_P || b % SNN_P == 0);
    return (uint8_t)(b % SNN_P);
}

/*
 * The vectors of Z_p values the protocols draw (PrivateCompare's s_i and
 * m_k, the bit shares P2 deals) come five to a 32-bit word (SPEC 4.5 j):
 * x, four keystream bytes little-endian, stands for the fraction x / 2^32;
 * v = floor(x b^5 / 2^32) is uniform in [0, b^5) once x is rejected when
 * x b^5 mod 2^32 < 2^32 mod b^5 (Lemire's rejection, as in snn_prg_perm_ref),
 * and its five base-b digits, most significant first, are the values:
 * b = 67 for Z_p, b = 66 plus one for Z_p*.  A call of n values takes
 * ceil(n / 5) accepted words and drops the unused digits of the last.
 * This is the reference form, by division; the bulk form below takes the
 * same digits by multiplication.
 */
#define ZP_POW5    1350125107u     /* 67^5                                */
#define ZP_REJECT   244591975u     /* 2^32 mod 67^5: 5.7% of words        */
#define ZPS_POW5   1252332576u     /* 66^5                                */
#define ZPS_REJECT  537969568u     /* 2^32 mod 66^5: 12.5% of words       */

static void zp_words_ref(snn_prg *g, uint8_t *out, size_t n, uint32_t base, uint32_t pow5, uint32_t reject,
                         uint8_t add)
{
    size_t i = 0;
    while (i < n) {
        uint32_t x = 0;
        uint64_t t, v;
        uint8_t d[5];
        int k;
        for (k = 0; k < 4; k++) x |= (uint32_t)prg_byte(g) << (8 * k);
        t = (uint64_t)x * pow5;
        if ((uint32_t)t < reject) continue;
        v = t >> 32;
        for (k = 4; k >= 0; k--) { d[k] = (uint8_t)(v % base); v /= base; }
        for (k = 0; k < 5 && i < n; k++) out[i++] = (uint8_t)(d[k] + add);
    }
}

void snn_prg_zp_n_ref(snn_prg *g, uint8_t *out, size_t n)
{
    zp_words_ref(g, out, n, SNN_P, ZP_POW5, ZP_REJECT, 0);
}

void snn_prg_zp_star_n_ref(snn_prg *g, uint8_t *out, size_t n)
{
    zp_words_ref(g, out, n, SNN_P - 1, ZPS_POW5, ZPS_REJECT, 1);
}

/* snn_prg_bit -- one uniform bit (the low bit of a fresh byte). */
uint8_t snn_prg_bit(snn_prg *g)
{
    return (uint8_t)(prg_byte(g) & 1);
}

/*
 * snn_prg_perm_ref -- a uniform permutation of 0..n-1 (n <= 256), the
 * reference form: Fisher-Yates, each index k in [0, i) drawn without bias
 * from bytes b by Lemire's multiply-and-reject (ACM TOMACS 29(1), 2019):
 * k = floor(b i / 256), rejecting b when the low byte of b i is below
 * 256 mod i.  That rejects exactly 256 mod i values of b and leaves
 * floor(256 / i) for each k.  The division runs only when the low byte is
 * below i, i.e. rarely.
 */
void snn_prg_perm_ref(snn_prg *g, uint8_t *pi, size_t n)
{
    size_t i;
    assert(n <= 256);                    /* positions fit a byte (securenn.h) */
    for (i = 0; i < n; i++) pi[i] = (uint8_t)i;
    for (i = n; i > 1; i--) {
        const unsigned bound = (unsigned)i;
        unsigned m = prg_byte(g) * bound;
        size_t k;
        uint8_t t;
        if ((m & 255) < bound) {
            const unsigned lim = 256 % bound;
            while ((m & 255) < lim) m = prg_byte(g) * bound;
        }
        k = m >> 8;
        t = pi[i - 1]; pi[i - 1] = pi[k]; pi[k] = t;
    }
}

/*
 * The bulk forms.  Each walks the current keystream blocks with a local
 * cursor (so the compiler keeps it in a register rather than storing it
 * after every byte, as it must when the output might alias g), refills when
 * they run out, and consumes the bytes in the order, and with the accept /
 * reject decisions, of its reference form above.
 */

/*
 * The five digits of word x in base b, by multiplication: t = x b; the
 * digit is t's high half and t's low half carries the rest of the fraction
 * x / 2^32 on (x b^5 = 2^32 (d_0 b^4 + ... + d_4) + the last low half, so
 * these are the digits of snn_prg_zp_n_ref's v).  Writes min(5, n - i)
 * values at out + i whether or not x is accepted, and returns how many to
 * keep: no branch on the keystream.
 */
static size_t zp_word(uint8_t *out, size_t i, size_t n, uint32_t x, uint32_t base, uint32_t reject, uint8_t add)
{
    const size_t k = n - i < 5 ? n - i : 5;
    uint8_t d[5];
    uint64_t t = x;
    size_t j;
    for (j = 0; j < 5; j++) {
        t = (t & 0xffffffffu) * base;
        d[j] = (uint8_t)(t >> 32);
    }
    for (j = 0; j < k; j++) out[i + j] = (uint8_t)(d[j] + add);
    return k * (size_t)((uint32_t)t >= reject);
}

static void zp_words(snn_prg *g, uint8_t *out, size_t n, uint32_t base, uint32_t reject, uint8_t add)
{
    size_t i = 0;
    while (i < n) {
        unsigned u;
        if (SNN_PRG_BUF - g->used < 4) {
            /* a word across the refill: its bytes one at a time */
            uint32_t x = 0;
            int k;
            for (k = 0; k < 4; k++) x |= (uint32_t)prg_byte(g) << (8 * k);
            i += zp_word(out, i, n, x, base, reject, add);
            continue;
        }
        for (u = g->used; u + 4 <= SNN_PRG_BUF && i < n; u += 4)
            i += zp_word(out, i, n, snn_load32_le(g->block + u), base, reject, add);
        g->used = u;
    }
}

void snn_prg_zp_n(snn_prg *g, uint8_t *out, size_t n)
{
    zp_words(g, out, n, SNN_P, ZP_REJECT, 0);
}

void snn_prg_zp_star_n(snn_prg *g, uint8_t *out, size_t n)
{
    zp_words(g, out, n, SNN_P - 1, ZPS_REJECT, 1);
}

void snn_prg_bit_n(snn_prg *g, uint8_t *out, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned u;
        if (g->used == SNN_PRG_BUF) prg_refill(g);
        for (u = g->used; u < SNN_PRG_BUF && i < n; u++) out[i++] = (uint8_t)(g->block[u] & 1);
        g->used = u;
    }
}

void snn_prg_u64_n(snn_prg *g, uint64_t *out, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* whole values straight from the keystream blocks; a value that
         * straddles a refill (after an odd-sized draw) by snn_prg_u64 */
        size_t k = (SNN_PRG_BUF - g->used) / 8, t;
        if (k == 0) { out[i++] = snn_prg_u64(g); continue; }
        if (k > n - i) k = n - i;
        for (t = 0; t < k; t++) out[i + t] = snn_load64_le(g->block + g->used + 8 * t);
        g->used += (unsigned)(8 * k);
        i += k;
    }
}

void snn_prg_lm1_n(snn_prg *g, uint64_t *out, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) out[i] = snn_prg_lm1(g);
}

/* snn_prg_perm -- snn_prg_perm_ref's permutation, from the same bytes. */
void snn_prg_perm(snn_prg *g, uint8_t *pi, size_t n)
{
    size_t i;
    assert(n <= 256);                    /* positions fit a byte (securenn.h) */
    unsigned u = g->used;
    for (i = 0; i < n; i++) pi[i] = (uint8_t)i;
    for (i = n; i > 1; i--) {
        const unsigned bound = (unsigned)i;
        unsigned m;
        uint8_t t;
        if (u == SNN_PRG_BUF) { g->used = u; prg_refill(g); u = 0; }
        m = g->block[u++] * bound;
        if ((m & 255) < bound) {
            const unsigned lim = 256 % bound;
            while ((m & 255) < lim) {
                if (u == SNN_PRG_BUF) { g->used = u; prg_refill(g); u = 0; }
                m = g->block[u++] * bound;
            }
        }
        t = pi[i - 1]; pi[i - 1] = pi[m >> 8]; pi[m >> 8] = t;
    }
    g->used = u;
}

/* snn_prg_position -- bytes drawn since snn_prg_init: the blocks made so
 * far (the counter, with its carry into nonce word 1) less those unread. */
uint64_t snn_prg_position(const snn_prg *g)
{
    uint64_t blocks = ((uint64_t)g->nonce[1] << 32) + g->counter;
    if (blocks == 0) return 0;          /* nothing made yet, or never keyed */
    return blocks * 64 - (SNN_PRG_BUF - g->used);
}

/* snn_prg_seek -- the stream at byte pos: the refill of the SNN_PRG_BLOCKS
 * blocks that hold it, read up to pos, so that snn_prg_position gives pos
 * and the next byte is the keystream's byte pos. */
void snn_prg_seek(snn_prg *g, uint64_t pos)
{
    const uint64_t blocks = pos / SNN_PRG_BUF * SNN_PRG_BLOCKS;   /* the refill's first block */
    g->counter = (uint32_t)blocks;
    g->nonce[1] = (uint32_t)(blocks >> 32);
    prg_refill(g);
    g->used = (unsigned)(pos % SNN_PRG_BUF);
}

/* ==== 3. Pair streams, sharing, reveal, refresh (SPEC 1.1, 1.4) ========== */

/* The stream of key K_ab for party p, which must be Pa or Pb and hold it;
 * with the test hook SNN_TEST_SWAP_PAIRS, the one it shares with the third
 * server instead. */
static snn_prg *pair_stream(snn_party *p, int a, int b, const char *name)
{
    int other = p->id == a ? b : p->id == b ? a : -1;
    if (other < 0 || !p->have_pair[other]) {
        snn_fail(p, SNN_ERR_ARG, "%s requested by a party that does not hold it (SPEC 1.4)", name);
        return NULL;
    }
#ifdef SNN_TEST_HOOKS
    if (SNN_TEST_ON(p, SNN_TEST_SWAP_PAIRS)) other = 3 - p->id - other;   /* test runner only */
#endif
    return &p->pair[other];
}

/* K01: the stream P0 and P1 share (common randomness, zero-shares). */
snn_prg *snn_k01(snn_party *p) { return pair_stream(p, 0, 1, "K01"); }
/* K02: P0 and P2 (P0's triple shares). */
snn_prg *snn_k02(snn_party *p) { return pair_stream(p, 0, 2, "K02"); }
/* K12: P1 and P2 (P1's triple shares). */
snn_prg *snn_k12(snn_party *p) { return pair_stream(p, 1, 2, "K12"); }

/*
 * snn_share -- the owner splits x as (s, x - s) with s uniform from its
 * private stream and sends one share to each of P0 and P1 (SPEC 1.1).
 * Comm: owner -> P0, P1: n Z_L each.  An owner that is P0 or P1 keeps its
 * own share and sends the other.
 */
int snn_share(snn_party *p, int owner, uint64_t *out, const uint64_t *x, size_t n)
{
    uint64_t *s = NULL;
    size_t i;
    int j, rc = -1;

    if (p->err) return -1;
    if (p->id == owner) {
        s = malloc((n ? n : 1) * 2 * sizeof *s);
        if (!s) return snn_fail(p, SNN_ERR_NOMEM, "Share: out of memory");
        /* Step 1 [owner]: s_0 uniform, s_1 = x - s_0 */
        for (i = 0; i < n; i++) {
            s[i] = snn_prg_u64(&p->own);
#ifdef SNN_TEST_HOOKS
            if (SNN_TEST_ON(p, SNN_TEST_SHARE_NO_MASK)) s[i] = 0;          /* test runner only */
#endif
            s[n + i] = x[i] - s[i];
        }
        /* Step 2 [owner -> P0, P1]: one share each */
        for (j = 0; j < 2; j++) {
            if (j == owner) memcpy(out, s + (size_t)j * n, n * sizeof *s);
            else SNN_GUARD(snn_send_zl(p, j, SNN_PROTO_SHARE, 2, s + (size_t)j * n, n));
        }
    } else if (p->id == 0 || p->id == 1) {
        SNN_GUARD(snn_recv_zl(p, owner, SNN_PROTO_SHARE, 2, out, n));
    }
    rc = 0;
cleanup:
    if (s) { snn_wipe(s, n * 2 * sizeof *s); free(s); }
    return rc;
}

/*
 * snn_reveal -- reconstruction to one party only: P0 and P1 send their
 * shares to `to`, which adds them.  Nobody else learns the value.
 * Comm: P0, P1 -> to: n Z_L each (one of them if `to` is P0 or P1).
 */
int snn_reveal(snn_party *p, int to, uint64_t *out, const uint64_t *share, size_t n)
{
    uint64_t *t = NULL;
    size_t i;
    int j, rc = -1;

    if (p->err) return -1;
    if ((p->id == 0 || p->id == 1) && p->id != to) {
        /* Step 1 [P_j -> to]: the share */
        return snn_send_zl(p, to, SNN_PROTO_REVEAL, 1, share, n);
    }
    if (p->id != to) return 0;      /* P2, not the receiver: nothing to do */
    t = malloc((n ? n : 1) * sizeof *t);
    if (!t) return snn_fail(p, SNN_ERR_NOMEM, "Reveal: out of memory");
    /* Step 2 [to]: x = <x>_0 + <x>_1 */
    if (to == 0 || to == 1) memcpy(out, share, n * sizeof *out);
    else memset(out, 0, n * sizeof *out);
    for (j = 0; j < 2; j++) {
        if (j == to) continue;
        SNN_GUARD(snn_recv_zl(p, j, SNN_PROTO_REVEAL, 1, t, n));
        for (i = 0; i < n; i++) out[i] += t[i];
    }
    rc = 0;
cleanup:
    if (t) snn_free_wiped(t, (n ? n : 1) * sizeof *t);   /* the other party's share */
    return rc;
}

/*
 * snn_refresh -- makes output shares fresh (SPEC 1.1): u from K01, P0 adds
 * u and P1 subtracts it, so the value is unchanged.  P2 does nothing.
 */
void snn_refresh(snn_party *p, uint64_t *x, size_t n)
{
    snn_prg *g;
    uint64_t u[64];
    size_t i, k, m;
    if (p->id > 1 || !(g = snn_k01(p))) return;   /* P2; or no K01: the sticky error is set */
#ifdef SNN_TEST_HOOKS
    if (SNN_TEST_ON(p, SNN_TEST_NO_REFRESH)) return;                    /* test runner only */
#endif
    for (i = 0; i < n; i += m) {              /* u drawn 64 at a time, in order */
        m = n - i < 64 ? n - i : 64;
        snn_prg_u64_n(g, u, m);
        for (k = 0; k < m; k++) x[i + k] += p->id == 0 ? u[k] : (uint64_t)0 - u[k];
    }
    snn_wipe(u, sizeof u);
}

/* ==== 3b. Pairwise and private keys (SPEC 1.4 [USE]) ====================== */

/* A fresh 256-bit key from the operating system. */
static int os_key(snn_party *p, uint8_t key[32])
{
    if (snn_os_random(key, 32) != 0)
        return snn_fail(p, SNN_ERR_IO, "Setup step 1: cannot read the operating system's randomness");
    return 0;
}

/*
 * Derives a 256-bit key from a public seed: one ChaCha20 block keyed by the
 * seed, with (label, a, b) as nonce.  Testing and reproduction only: whoever
 * knows the seed knows every key.
 */
static void seed_key(uint8_t out[32], uint64_t seed, uint32_t label, uint32_t a, uint32_t b)
{
    uint8_t kb[32];
    uint32_t key[8], nonce[3], w[16];
    int i;
    /* the tag "-NNS" is the word 0x534e4e2d ("SNN-") stored little-endian:
     * it separates this use of the seed from the owner's and the tests' */
    snn_seed_key(kb, seed, "-NNS");
    for (i = 0; i < 8; i++) key[i] = snn_load32_le(kb + 4 * i);
    nonce[0] = label; nonce[1] = a; nonce[2] = b;
    snn_chacha20_block(w, key, 0, nonce);
    for (i = 0; i < 8; i++) snn_store32_le(out + 4 * i, w[i]);
    snn_wipe(w, sizeof w);
    snn_wipe(key, sizeof key);
    snn_wipe(kb, sizeof kb);
}

/*
 * snn_setup_keys -- Setup step 1: for each pair of servers i < j, Pi draws
 * K_ij and sends it to Pj over their channel (assumed private: see the
 * README's threat model); each party draws its private key.  The owner
 * only draws a private key.  Then snn_check_keys.
 */
int snn_setup_keys(snn_party *p, const uint64_t *seed)
{
    uint8_t key[32];
    int k, rc = -1;

    if (p->err) return -1;
    if (p->id < SNN_NPARTY) {
        for (k = 0; k < SNN_NPARTY; k++) {
            if (k == p->id) continue;
            if (p->id < k) {
                if (seed) seed_key(key, *seed, 1, (uint32_t)p->id, (uint32_t)k);
                else SNN_GUARD(os_key(p, key));
                SNN_GUARD(snn_send(p, k, SNN_PROTO_SETUP, 1, SNN_KIND_BYTES, key, sizeof key));
            } else {
                SNN_GUARD(snn_recv(p, k, SNN_PROTO_SETUP, 1, SNN_KIND_BYTES, key, sizeof key));
            }
            snn_prg_init(&p->pair[k], key, 0);
            p->have_pair[k] = 1;
        }
    }
    if (seed) seed_key(key, *seed, 2, (uint32_t)p->id, 0);
    else SNN_GUARD(os_key(p, key));
    snn_prg_init(&p->own, key, 0);
    SNN_GUARD(snn_check_keys(p));
    rc = 0;
cleanup:
    snn_wipe(key, sizeof key);
    return rc;
}

int snn_check_keys(snn_party *p)
{
    int a, b;
    for (a = 0; a < SNN_NEND; a++) {
        if (!p->have_pair[a]) continue;
        if (memcmp(p->pair[a].key, p->own.key, sizeof p->own.key) == 0)
            return snn_fail(p, SNN_ERR_ARG, "Setup step 1: the key shared with %s equals the private key", snn_endpoint_name(a));
        for (b = a + 1; b < SNN_NEND; b++) {
            if (!p->have_pair[b]) continue;
            if (memcmp(p->pair[a].key, p->pair[b].key, sizeof p->pair[a].key) == 0)
                return snn_fail(p, SNN_ERR_ARG,
                                "Setup step 1: the keys shared with %s and %s are equal, so triples "
                                "would be known to both (SPEC 4.3 a)", snn_endpoint_name(a), snn_endpoint_name(b));
        }
    }
    return 0;
}

/* ==== 4. Pi_MatMul and local truncation [SNN, Alg. 1, Alg. 11] =========== */

/*
 * Helpers shared by every protocol below.  proto_begin: the sticky error
 * and the role check every protocol starts with; the scratch block
 * below holds each call's temporaries.
 */
static int proto_begin(snn_party *p, const char *name)
{
    if (p->err) return -1;
    if (p->id < 0 || p->id > 2)
        return snn_fail(p, SNN_ERR_ARG, "%s: only P0, P1 and P2 run protocols", name);
    /* every pair stream this party holds (SPEC 1.4) is set up, so the
     * accessors below never fail inside a protocol */
    if (!p->have_pair[(p->id + 1) % 3] || !p->have_pair[(p->id + 2) % 3])
        return snn_fail(p, SNN_ERR_ARG, "%s: pairwise keys not set up (Setup step 1)", name);
    return 0;
}

/*
 * One scratch allocation per protocol call.  A protocol lists its
 * temporaries in a plan, one array per symbol of the paper, each with its
 * pointer and its size (n elements of per each: SCRATCH_U64, SCRATCH_U8);
 * scratch_open sizes one zeroed block from the plan and points every array
 * into it (the uint64_t arrays first, so each is aligned), so no count is
 * kept by hand; scratch_close wipes the block once (it holds shares).
 * Fewer allocations, and one wipe instead of one per array.
 * A wiped block of at most SNN_SPARE_MAX bytes goes back to the party's
 * spares, and the next call takes the smallest spare that fits: it is all
 * zero (only wiped blocks are kept), so unlike calloc of a block the heap
 * kept (nn.c, heap_keep) it is not zeroed a second time.  Measured with
 * ./securenn bench, 16 interleaved runs each on a loaded machine, median
 * CPU of the busiest party: DReLU 128x128 34.7 ms with the spares, 41.6 ms
 * without; MatMul 784x128x10 3.0 ms, 3.4 ms; small rows alike.
 */
typedef struct {
    snn_party *p;
    unsigned char *base;
    size_t size, cap;           /* cap: the block's size, >= size */
} scratch;

typedef struct {
    uint64_t **u64;             /* the array's pointer, if of uint64_t */
    uint8_t  **u8;              /* ... or if of bytes                  */
    size_t     n, per;          /* n * per elements                    */
} scratch_arr;
#define SCRATCH_U64(a, n, per) { &(a), NULL, (n), (per) }
#define SCRATCH_U8(a, n, per)  { NULL, &(a), (n), (per) }
#define SCRATCH_OPEN(p, s, plan, name) scratch_open((p), (s), (plan), sizeof (plan) / sizeof *(plan), (name))

/* A block of need bytes, all zero: the smallest spare that fits, or fresh. */
static int scratch_block(snn_party *p, scratch *s, size_t need, const char *name)
{
    int k, best = -1;
    for (k = 0; k < SNN_SPARE; k++)
        if (p->spare.block[k] && p->spare.size[k] >= need
            && (best < 0 || p->spare.size[k] < p->spare.size[best]))
            best = k;
    if (best >= 0) {
        s->base = p->spare.block[best];
        s->cap = p->spare.size[best];
        p->spare.block[best] = NULL;
        return 0;
    }
    if (!(s->base = calloc(need, 1)))
        return snn_fail(p, SNN_ERR_NOMEM, "%s: out of memory", name);
    s->cap = need;
    return 0;
}

static int scratch_open(snn_party *p, scratch *s, const scratch_arr *plan, size_t narr, const char *name)
{
    size_t i, b, off = 0;
    int pass;
    memset(s, 0, sizeof *s);
    /* size_mul keeps each array below SIZE_MAX / 16 bytes, and the total
     * is kept below it too, so no sum wraps */
    for (i = 0; i < narr; i++) {
        if (snn_size_mul(&b, plan[i].n, plan[i].per) != 0
            || snn_size_mul(&b, b, plan[i].u64 ? 8 : 1) != 0 || s->size > ((size_t)-1 / 16) - b)
            return snn_fail(p, SNN_ERR_ARG, "%s: %zu elements is too many", name, plan[i].n);
        s->size += b;
    }
    s->p = p;
    if (scratch_block(p, s, s->size ? s->size : 1, name) != 0) return -1;
    for (pass = 0; pass < 2; pass++)            /* uint64_t arrays, then bytes */
        for (i = 0; i < narr; i++) {
            if (pass == 0 && plan[i].u64) {
                *plan[i].u64 = (uint64_t *)(void *)(s->base + off);
                off += plan[i].n * plan[i].per * 8;
            } else if (pass == 1 && plan[i].u8) {
                *plan[i].u8 = s->base + off;
                off += plan[i].n * plan[i].per;
            }
        }
    assert(off == s->size);
    return 0;
}

static void scratch_close(scratch *s)
{
    snn_party *p = s->p;
    int k, slot = -1;
    if (!s->base) return;
    snn_wipe(s->base, s->size);          /* the block is all zero again */
    if (s->cap <= SNN_SPARE_MAX) {
        /* an empty slot if there is one, else the smallest spare's */
        for (k = 0; k < SNN_SPARE; k++) {
            if (!p->spare.block[k]) { slot = k; break; }
            if (slot < 0 || p->spare.size[k] < p->spare.size[slot]) slot = k;
        }
        /* all slots full: the spares stay unless this block is larger */
        if (p->spare.block[slot] && p->spare.size[slot] >= s->cap) slot = -1;
    }
    if (slot >= 0) {
        free(p->spare.block[slot]);
        p->spare.block[slot] = s->base;
        p->spare.size[slot] = s->cap;
    } else {
        free(s->base);
    }
    s->base = NULL;
}

static void draw_zl(snn_prg *g, uint64_t *x, size_t n)
{
    snn_prg_u64_n(g, x, n);
}

/*
 * snn_plain_matmul -- W (m x v) = op(X) (m x n) * op(Y) (n x v) over Z_L in
 * the clear, transposes as in snn_matmul (X stored n x m when tx).  The one
 * plaintext product: P2's triples here, the twin's layers in nn.c, and
 * P0's and P1's products of their shares in Pi_MatMul step 3, so it does
 * not branch on an entry.  Loop orders keep the inner loop on contiguous
 * memory.
 */
void snn_plain_matmul(uint64_t *W, const uint64_t *X, const uint64_t *Y,
                      size_t m, size_t n, size_t v, int tx, int ty)
{
    size_t i, k, j;
    memset(W, 0, m * v * sizeof *W);
    if (!tx && !ty) {
        for (i = 0; i < m; i++) {
            uint64_t *w = W + i * v;
            for (k = 0; k < n; k++) {
                const uint64_t a = X[i * n + k], *y = Y + k * v;
                for (j = 0; j < v; j++) w[j] += a * y[j];
            }
        }
    } else if (tx && !ty) {
        for (k = 0; k < n; k++)
            for (i = 0; i < m; i++) {
                const uint64_t a = X[k * m + i], *y = Y + k * v;
                uint64_t *w = W + i * v;
                for (j = 0; j < v; j++) w[j] += a * y[j];
            }
    } else if (!tx && ty) {
        for (i = 0; i < m; i++)
            for (j = 0; j < v; j++) {
                const uint64_t *x = X + i * n, *y = Y + j * n;
                uint64_t s = 0;
                for (k = 0; k < n; k++) s += x[k] * y[k];
                W[i * v + j] = s;
            }
    } else {
        for (i = 0; i < m; i++)
            for (j = 0; j < v; j++) {
                uint64_t s = 0;
                for (k = 0; k < n; k++) s += X[k * m + i] * Y[j * n + k];
                W[i * v + j] = s;
            }
    }
}


/* T (cols x rows) = A^T, A stored rows x cols, row-major. */
static void transpose(uint64_t *T, const uint64_t *A, size_t rows, size_t cols)
{
    size_t r, c;
    for (r = 0; r < rows; r++)
        for (c = 0; c < cols; c++) T[c * rows + r] = A[r * cols + c];
}

/*
 * One Beaver triple for Pi_MatMul, matrix form (U: m x n, V: n x v,
 * Z = UV: m x v) or element-wise form (U, V, Z: n-vectors, Z = U o V).
 * P0 and P1 hold their shares U_j, V_j, Z_j; P2 holds only the shape.
 */
typedef struct {
    int       ew;             /* 1: element-wise product of n-vectors     */
    size_t    m, n, v;        /* matrix form shape                         */
    size_t    nu, nv, nz;     /* elements of U, V, Z                       */
    uint64_t *U, *V, *Z;      /* [P_j] this party's shares; NULL on P2     */
    scratch   sc;             /* [P_j] the block that holds them           */
} mm_triple;

static int triple_shape(snn_party *p, mm_triple *t, int ew, size_t m, size_t n, size_t v)
{
    memset(t, 0, sizeof *t);
    t->ew = ew; t->m = m; t->n = n; t->v = v;
    if (ew) {
        if (snn_size_mul(&t->nu, n, 2) != 0)
            return snn_fail(p, SNN_ERR_ARG, "MatMul: %zu elements is too many", n);
        t->nu = t->nv = t->nz = n;
        return 0;
    }
    if (snn_size_mul(&t->nu, m, n) != 0 || snn_size_mul(&t->nv, n, v) != 0 || snn_size_mul(&t->nz, m, v) != 0
        || t->nu > (SIZE_MAX / 16) - t->nv)
        return snn_fail(p, SNN_ERR_ARG, "MatMul: dimensions %zu x %zu x %zu are too large", m, n, v);
    return 0;
}

static void triple_free(mm_triple *t)
{
    scratch_close(&t->sc);
    t->U = t->V = t->Z = NULL;
}

/* C = A * B in the triple's form: a matrix product, or element-wise. */
static void triple_product(const mm_triple *t, uint64_t *C, const uint64_t *A, const uint64_t *B)
{
    size_t i;
    if (!t->ew) {
        snn_plain_matmul(C, A, B, t->m, t->n, t->v, 0, 0);
        return;
    }
    for (i = 0; i < t->nz; i++) C[i] = A[i] * B[i];
}

/*
 * matmul_deal -- Pi_MatMul step 1, the PRF triple (SPEC 1.4, 2.1).  It uses
 * no input, so it could be precomputed.  On P0 fills t->U, t->V, t->Z and
 * on P1 t->U, t->V (freed by triple_free); P1 receives Z_1 in matmul_open,
 * after it has sent step 2, so MatMul takes one round, not two (SPEC 4.5 i).
 */
static int matmul_deal(snn_party *p, mm_triple *t)
{
    uint64_t *U0, *V0, *Z0, *U1, *V1, *Z1, *U, *V;
    scratch sc;
    int rc = -1;

    memset(&sc, 0, sizeof sc);
    if (p->id == 0 || p->id == 1) {
        snn_prg *g = p->id == 0 ? snn_k02(p) : snn_k12(p);
        const scratch_arr plan[] = { SCRATCH_U64(t->U, t->nu, 1), SCRATCH_U64(t->V, t->nv, 1),
                                     SCRATCH_U64(t->Z, t->nz, 1) };
        SNN_GUARD(SCRATCH_OPEN(p, &t->sc, plan, "MatMul"));
        /* Step 1 [P_j,P2]: U_j, V_j from the stream P_j shares with P2 (K02 or K12) */
        draw_zl(g, t->U, t->nu);
        draw_zl(g, t->V, t->nv);
#ifdef SNN_TEST_HOOKS
        if (SNN_TEST_ON(p, SNN_TEST_MM_NO_MASK)) {                          /* test runner only */
            memset(t->U, 0, t->nu * sizeof *t->U);
            memset(t->V, 0, t->nv * sizeof *t->V);
        }
#endif
        /* Step 1 [P0,P2]: Z_0 from K02 (P1's Z_1 is received in matmul_open) */
        if (p->id == 0) draw_zl(g, t->Z, t->nz);
    } else {
        const scratch_arr plan[] = {
            SCRATCH_U64(U0, t->nu, 1), SCRATCH_U64(V0, t->nv, 1), SCRATCH_U64(Z0, t->nz, 1),
            SCRATCH_U64(U1, t->nu, 1), SCRATCH_U64(V1, t->nv, 1), SCRATCH_U64(Z1, t->nz, 1),
            SCRATCH_U64(U, t->nu, 1), SCRATCH_U64(V, t->nv, 1) };
        size_t i;
        SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "MatMul"));
        /* Step 1 [P2]: P0's U_0, V_0, Z_0 from K02 and P1's U_1, V_1 from K12,
         * drawn in the same order as P0 and P1 draw them */
        draw_zl(snn_k02(p), U0, t->nu);
        draw_zl(snn_k02(p), V0, t->nv);
        draw_zl(snn_k02(p), Z0, t->nz);
        draw_zl(snn_k12(p), U1, t->nu);
        draw_zl(snn_k12(p), V1, t->nv);
#ifdef SNN_TEST_HOOKS
        if (SNN_TEST_ON(p, SNN_TEST_MM_NO_MASK)) {                          /* test runner only */
            memset(U0, 0, t->nu * sizeof *U0); memset(U1, 0, t->nu * sizeof *U1);
            memset(V0, 0, t->nv * sizeof *V0); memset(V1, 0, t->nv * sizeof *V1);
        }
#endif
        /* Step 1 [P2]: Z_1 = (U_0 + U_1)(V_0 + V_1) - Z_0, sent to P1 */
        for (i = 0; i < t->nu; i++) U[i] = U0[i] + U1[i];
        for (i = 0; i < t->nv; i++) V[i] = V0[i] + V1[i];
        triple_product(t, Z1, U, V);
        for (i = 0; i < t->nz; i++) Z1[i] -= Z0[i];
        SNN_GUARD(snn_send_zl(p, 1, SNN_PROTO_MATMUL, 1, Z1, t->nz));
    }
    rc = 0;
cleanup:
    scratch_close(&sc);
    return rc;
}

/*
 * matmul_open -- Pi_MatMul steps 2-3 on a dealt triple: open E = X - U and
 * F = Y - V, then W_j = -j E F + X_j F + E Y_j + Z_j and the zero-share
 * refresh.  P1 receives step 1's Z_1 here, after its step-2 frame is sent.
 * P2 has no part.  W may be the same array as X or Y.
 */
static int matmul_open(snn_party *p, const mm_triple *t, uint64_t *W, const uint64_t *X, const uint64_t *Y)
{
    uint64_t *EFj, *EFo, *EF, *XE, *A, *B;
    const uint64_t *E, *F;
    scratch sc;
    size_t i, nef = t->nu + t->nv;
    int j = p->id, rc = -1;

    memset(&sc, 0, sizeof sc);
    if (p->id == 2) return 0;                 /* Steps 2-3: n/a for P2 */
    {
        /* E_j || F_j, the peer's E_{1-j} || F_{1-j}, E || F, X_j - j E,
         * and the two products */
        const scratch_arr plan[] = { SCRATCH_U64(EFj, nef, 1), SCRATCH_U64(EFo, nef, 1), SCRATCH_U64(EF, nef, 1),
                                     SCRATCH_U64(XE, t->nu, 1), SCRATCH_U64(A, t->nz, 1),
                                     SCRATCH_U64(B, t->nz, 1) };
        SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "MatMul"));
    }

    /* Step 2 [P_j]: E_j = X_j - U_j, F_j = Y_j - V_j, sent as one frame E_j || F_j */
    for (i = 0; i < t->nu; i++) EFj[i] = X[i] - t->U[i];
    for (i = 0; i < t->nv; i++) EFj[t->nu + i] = Y[i] - t->V[i];
    SNN_GUARD(snn_send_zl(p, 1 - j, SNN_PROTO_MATMUL, 2, EFj, nef));
    SNN_GUARD(snn_recv_zl(p, 1 - j, SNN_PROTO_MATMUL, 2, EFo, nef));
    /* Step 2 [P0,P1]: E = E_0 + E_1 = X - U and F = F_0 + F_1 = Y - V */
    for (i = 0; i < nef; i++) EF[i] = EFj[i] + EFo[i];
    E = EF;
    F = EF + t->nu;
    /* Step 1 [P1]: Z_1 from P2, dealt before step 2 and read only now */
    if (j == 1) SNN_GUARD(snn_recv_zl(p, 2, SNN_PROTO_MATMUL, 1, t->Z, t->nz));

    /* Step 3 [P_j]: W_j = -j E F + X_j F + E Y_j + Z_j, evaluated as
     * (X_j - j E) F + E Y_j + Z_j (two products instead of three) */
    for (i = 0; i < t->nu; i++) XE[i] = j ? X[i] - E[i] : X[i];   /* j: the role, public */
    triple_product(t, A, XE, F);
    triple_product(t, B, E, Y);
    for (i = 0; i < t->nz; i++) W[i] = A[i] + B[i] + t->Z[i];
    /* Step 3 [P0,P1]: zero-share refresh, u from K01 (SPEC 1.1) */
    snn_refresh(p, W, t->nz);
    rc = 0;
cleanup:
    scratch_close(&sc);
    return rc;
}

/*
 * snn_matmul -- Pi_MatMul, implements [SNN, Algorithm 1] with PRF triples.
 * W = op(X) * op(Y), op(X) m x n and op(Y) n x v; with transpose_x set, X
 * is stored n x m and op(X) = X^T (likewise Y, stored v x n).
 * Roles:  P0,P1 hold <X>, <Y> and get <W> (fresh); P2 deals the triple and
 *         passes NULL for W, X, Y.
 * Pre:    none (no truncation inside: call snn_truncate after fixed x fixed).
 * Comm:   step 1 P2 -> P1: mv Z_L; step 2 P0 <-> P1: (mn + nv) Z_L each way.
 *         Total (2mn + 2nv + mv) * 8 bytes [SNN, Table 1, PRF]; 1 round, as
 *         step 2 does not wait for step 1's frame (Table 1: 2; SPEC 4.5 i).
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: WP Alg. 1 prints -E.F for both parties; SPEC 4.1 [USE]: only
 *         P1 subtracts it.  Transposes are local: the shares of X^T are
 *         the X_j^T (CODE ignores its flags, SPEC 4.3 c).  P1 reads Z_1
 *         after step 2, one round instead of two (SPEC 4.5 i).
 */
int snn_matmul(snn_party *p, uint64_t *W, const uint64_t *X, const uint64_t *Y,
               size_t m, size_t n, size_t v, int transpose_x, int transpose_y)
{
    mm_triple t;
    uint64_t *Xt, *Yt;
    const uint64_t *A = X, *B = Y;
    scratch sc;
    int rc = -1;

    memset(&t, 0, sizeof t);
    memset(&sc, 0, sizeof sc);
    if (proto_begin(p, "MatMul") != 0) return -1;
    SNN_GUARD(triple_shape(p, &t, 0, m, n, v));
    /* Transposes [P0,P1]: the shares of X^T are X_0^T and X_1^T */
    if (p->id != 2 && (transpose_x || transpose_y)) {
        const scratch_arr plan[] = { SCRATCH_U64(Xt, transpose_x ? t.nu : 0, 1),
                                     SCRATCH_U64(Yt, transpose_y ? t.nv : 0, 1) };
        SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "MatMul"));
    }
    if (p->id != 2 && transpose_x) {
        transpose(Xt, X, n, m);
        A = Xt;
    }
    if (p->id != 2 && transpose_y) {
        transpose(Yt, Y, v, n);
        B = Yt;
    }
    /* Step 1: the triple */
    SNN_GUARD(matmul_deal(p, &t));
    /* Steps 2-3: open E, F; W_j; refresh */
    SNN_GUARD(matmul_open(p, &t, W, A, B));
    /* Step 4: n/a here; fixed-point callers truncate W_j with snn_truncate */
    rc = 0;
cleanup:
    triple_free(&t);
    scratch_close(&sc);
    return rc;
}

/*
 * snn_mul -- Pi_MatMul in element-wise form: z_i = x_i * y_i over Z_L
 * (SS, ReLU, MSB step 6, Division and Maxpool use it).
 * Roles:  as snn_matmul.  z may be the same array as x or y.
 * Comm:   step 1 P2 -> P1: n Z_L; step 2 P0 <-> P1: 2n Z_L each way.
 *         Total 40 bytes per element, 1 round (as snn_matmul).
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: as snn_matmul.
 */
int snn_mul(snn_party *p, uint64_t *z, const uint64_t *x, const uint64_t *y, size_t n)
{
    mm_triple t;
    int rc = -1;

    memset(&t, 0, sizeof t);
    if (proto_begin(p, "MatMul") != 0) return -1;
    SNN_GUARD(triple_shape(p, &t, 1, 1, n, 1));
    /* Step 1: the triple */
    SNN_GUARD(matmul_deal(p, &t));
    /* Steps 2-3: open E, F; z_j; refresh */
    SNN_GUARD(matmul_open(p, &t, z, x, y));
    rc = 0;
cleanup:
    triple_free(&t);
    return rc;
}

/*
 * snn_truncate -- local truncation by d bits, [SNN, Algorithm 11]
 * (SecureML style, SPEC 1.3): P0 takes <x>_0 >> d (arithmetic), P1 takes
 * -((-<x>_1) >> d).  The result is floor(s(x) / 2^d) or one more, except
 * with probability about |s(x)| / 2^64 (SPEC 1.3, 4.2 d).
 * Roles:  P0,P1 only; P2 does nothing (pass NULL).  y may equal x.
 * Comm:   none.   Deviations: none.
 */
void snn_truncate(snn_party *p, uint64_t *y, const uint64_t *x, size_t n, unsigned d)
{
    size_t i;
    if (p->err || (p->id != 0 && p->id != 1)) return;
    for (i = 0; i < n; i++)
        y[i] = p->id == 0 ? snn_sar(x[i], d) : (uint64_t)0 - snn_sar((uint64_t)0 - x[i], d);
}

/* ==== 5. Pi_SelectShare [SNN, Alg. 2] ==================================== */

/*
 * snn_select_share -- Pi_SS, implements [SNN, Algorithm 2].
 * z = (1 - alpha) x + alpha y, with alpha a shared 0/1 over Z_L.
 * Roles:  P0,P1 hold <alpha>, <x>, <y> and get <z> (fresh); P2 deals the
 *         triple and passes NULL for z, alpha, x, y.
 * Pre:    alpha in {0, 1}.
 * Comm:   one element-wise MatMul: 40 bytes per element, 1 round
 *         (Table 1: 2; SPEC 4.5 i).
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: bits are 0/1 integers and nothing is truncated (SPEC 1.3
 *         [USE]); one round, as snn_matmul.
 */
int snn_select_share(snn_party *p, uint64_t *z, const uint64_t *alpha,
                     const uint64_t *x, const uint64_t *y, size_t n)
{
    uint64_t *w, *c;
    scratch sc;
    size_t i;
    int rc = -1;

    memset(&sc, 0, sizeof sc);
    if (proto_begin(p, "SelectShare") != 0) return -1;
    {
        const scratch_arr plan[] = { SCRATCH_U64(w, n, 1), SCRATCH_U64(c, n, 1) };
        SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "SelectShare"));
    }
    /* Step 1 [P_j]: w = y - x */
    if (p->id != 2)
        for (i = 0; i < n; i++) w[i] = y[i] - x[i];
    /* Step 2 [all]: c = Pi_MatMul(alpha, w), element-wise, no truncation */
    SNN_GUARD(snn_mul(p, c, alpha, w, n));
    /* Step 3 [P_j]: z = x + c + u_j, u a zero-share from K01 */
    if (p->id != 2) {
        for (i = 0; i < n; i++) z[i] = x[i] + c[i];
        snn_refresh(p, z, n);
    }
    rc = 0;
cleanup:
    scratch_close(&sc);
    return rc;
}

/* ==== 6. Pi_PrivateCompare [SNN, Alg. 3] ================================= */

/*
 * snn_pc_c_ref -- Pi_PC step 2 on P_j for one element, as SPEC 2.3 writes
 * it: the shares c_i over Z_p, every operation reduced mod p, from the MSB
 * (i = 63) down.  t is r (beta = 0) or r + 1 (beta = 1); x: this party's
 * shares of the 64 bits of x.  The reference of snn_pc_c below.
 */
void snn_pc_c_ref(uint8_t c[SNN_ELL], const uint8_t x[SNN_ELL], uint64_t t, uint8_t beta, uint8_t j)
{
    uint8_t acc = 0;          /* sum of w_k over the more significant k, mod p */
    size_t i;
    for (i = SNN_ELL; i-- > 0;) {
        const uint8_t ti = (uint8_t)(t >> i & 1), xi = x[i];
        /* w_i = x_i + j t_i - 2 t_i x_i, a share of x_i XOR t_i */
        const uint8_t w = snn_sub_p(snn_add_p(xi, snn_mul_p(j, ti)), snn_mul_p((uint8_t)(2 * ti), xi));
        if (beta == 0)
            /* c_i = j r_i - x_i + j + sum_{k>i} w_k */
            c[i] = snn_add_p(snn_add_p(snn_sub_p(snn_mul_p(j, ti), xi), j), acc);
        else
            /* c_i = -j t_i + x_i + j + sum_{k>i} w_k */
            c[i] = snn_add_p(snn_add_p(snn_sub_p(xi, snn_mul_p(j, ti)), j), acc);
        acc = snn_add_p(acc, w);
    }
}

/*
 * snn_pc_c -- the same c_i (test.c compares them on random inputs), with
 * one reduction per c_i instead of one per operation: every term is kept
 * a non-negative integer below 2^16 and reduced once by snn_mod_p.
 *   w_i = x_i if t_i = 0, j + p - x_i if t_i = 1   (< 69; = x_i + j t_i - 2 t_i x_i mod p)
 *   S_i = sum_{k>i} w_k                             (< 64 * 69, plain integers)
 *   beta = 0: c_i = j t_i + (p - x_i) + j + S_i     (= j t_i - x_i + j + S_i)
 *   beta = 1: c_i = x_i + j (1 - t_i) + S_i         (= -j t_i + x_i + j + S_i)
 */
void snn_pc_c(uint8_t c[SNN_ELL], const uint8_t x[SNN_ELL], uint64_t t, uint8_t beta, uint8_t j)
{
    uint32_t w[SNN_ELL], S = 0;
    size_t i;
    for (i = 0; i < SNN_ELL; i++) {
        const uint32_t ti = (uint32_t)(t >> i & 1), xi = x[i];
        w[i] = ti ? j + SNN_P - xi : xi;
    }
    for (i = SNN_ELL; i-- > 0;) {
        const uint32_t ti = (uint32_t)(t >> i & 1), xi = x[i];
        const uint32_t v = beta == 0 ? j * ti + (SNN_P - xi) + j + S : xi + j * (1 - ti) + S;
        c[i] = snn_mod_p(v);
        S += w[i];
    }
}

/* Pi_PC's per-element work arrays (wiped once per call). */
typedef struct {
    uint8_t s[SNN_ELL], u[SNN_ELL], pi[SNN_ELL], c[SNN_ELL], m[SNN_ELL];
} pc_work;

/*
 * pc_mask -- Pi_PC steps 1-3 on P_j for one compared element: draws the
 * element's common randomness, computes the c_i of SPEC 2.3 over Z_p, and
 * writes d_i = s_i c_i in the order pi, plus this party's half of a Z_p
 * zero-share (see the Deviations of snn_private_compare).  x: this
 * party's shares of the 64 bits of x (index 0 = LSB); r, beta: public to
 * P0 and P1.  wk: work arrays, left holding this element's secrets.
 */
static void pc_mask(snn_prg *k01, pc_work *wk, uint8_t out[SNN_ELL], const uint8_t x[SNN_ELL],
                    uint64_t r, uint8_t beta, uint8_t j, const snn_party *p)
{
    uint8_t *s = wk->s, *u = wk->u, *pi = wk->pi, *c = wk->c, *m = wk->m;
    const uint8_t nj = (uint8_t)(1 - j);
    size_t i, k;

    /* Step 1 [P0,P1]: s_i in Z_p^*, u_i in Z_p^* (only the case beta = 1,
     * r = 2^l - 1 below uses them) and a permutation pi of the 64
     * positions, fresh for every element (SPEC 4.2 g), then the mask m_k
     * in Z_p.  Both parties know r and beta, so both draw u_i for the same
     * elements and their K01 streams stay in lock-step. */
    snn_prg_zp_star_n(k01, s, SNN_ELL);
    /* branch on beta and r [P0,P1]: both are public to P0 and P1; P2 never sees them */
    if (beta == 1 && r == SNN_LM1)
        snn_prg_zp_star_n(k01, u, SNN_ELL);
    snn_prg_perm(k01, pi, SNN_ELL);
    snn_prg_zp_n(k01, m, SNN_ELL);
#ifdef SNN_TEST_HOOKS
    /* Test hooks (test runner only): drawn as usual, then weakened */
    if (SNN_TEST_ON(p, SNN_TEST_PC_NO_PERM))
        for (k = 0; k < SNN_ELL; k++) pi[k] = (uint8_t)k;
    if (SNN_TEST_ON(p, SNN_TEST_PC_NO_MASK)) memset(m, 0, SNN_ELL);
    if (SNN_TEST_ON(p, SNN_TEST_PC_NO_BLIND)) memset(s, 1, SNN_ELL);
    if (SNN_TEST_ON(p, SNN_TEST_PC_NO_U)) memset(u, 0, SNN_ELL);
#else
    (void)p;
#endif

    /* branch on beta and r [P0,P1]: both are public to P0 and P1; P2 never sees them */
    if (beta == 1 && r == SNN_LM1) {
        /* Step 2 [P_j], beta = 1 and r = 2^l - 1: x <= r is certain, so
         * shares of exactly one zero, at the LSB:
         * c_1 = (-1)^j u_1 (reconstructs to 0), c_i = (1-j)(u_i + 1) - j u_i (to 1) */
        c[0] = j ? snn_sub_p(0, u[0]) : u[0];
        for (i = 1; i < SNN_ELL; i++)
            c[i] = snn_sub_p(snn_mul_p(nj, snn_add_p(u[i], 1)), snn_mul_p(j, u[i]));
    } else {
        /* Step 2 [P_j]: compare with r (beta = 0) or with t = r + 1 (beta = 1),
         * from the MSB down: c_i as in snn_pc_c_ref, computed by snn_pc_c */
        snn_pc_c(c, x, beta ? r + 1 : r, beta, j);
    }
    /* Step 3 [P_j]: d_i = s_i c_i, listed as (d_pi(1), ..., d_pi(l)); P0 adds
     * m_k and P1 subtracts it, so P2 sees d_pi(k) and nothing of s_i c_i^j
     * (one reduction: s c + m, or s c + p - m, is below 2^16) */
    for (k = 0; k < SNN_ELL; k++) {
        const uint32_t d = (uint32_t)s[pi[k]] * c[pi[k]];
        out[k] = snn_mod_p(j ? d + SNN_P - m[k] : d + m[k]);
    }
}

/*
 * snn_private_compare -- Pi_PC, implements [SNN, Algorithm 3] (SPEC 2.3).
 * P2 learns beta'[e] = beta[e] XOR (x_e > r_e) for each element e.
 * Roles:  P0,P1 hold Z_p shares of the bits of x (xbits[e*64 + i], i = 0
 *         the LSB), the public r and the common bit beta, and pass NULL for
 *         beta_prime; P2 gets beta_prime and passes NULL for the rest.
 * Pre:    the bit shares are in Z_p (p = 67 > l + 1, checked at compile time).
 * Comm:   step 3 P0,P1 -> P2: 64 Z_p each per element, 128 bytes, 1 round.
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: WP Alg. 3 step 4 has the beta = 0 sign wrong; SPEC 4.1 [USE]
 *         (r_i - x_i + 1 + sum, t = r + 1 for beta = 1, the r = 2^l - 1 case).
 *         Added (SPEC 4.5 a, not in [SNN]): in step 3 P0 and P1 also add a Z_p
 *         zero-share m_k from K01 to the permuted d, at no cost in bytes or
 *         rounds.  Without it P2 sees s_i c_i^0 and s_i c_i^1 apart, and in
 *         Pi_SC and Pi_MSB it dealt the bit shares x_i^j itself.  Then
 *         c_i^0, c_i^1 depend only on r's bits above i, so P2 can search
 *         r MSB first, keeping the guesses whose (c_i^0, c_i^1) equal some
 *         slot up to the factor s_i; this recovers r, and with it the
 *         protected input (a = x - r in SC, (c - x)/2 in MSB).  With the
 *         mask P2 sees exactly the d_i that SPEC 2.3's argument covers
 *         (test.c shows both views).
 * Steps:  SPEC 2.3 does not number them; here 1 common randomness, 2 w_i
 *         and c_i, 3 mask d_i = s_i c_i, permute and send, 4 P2's output.
 */
int snn_private_compare(snn_party *p, uint8_t *beta_prime, const uint8_t *xbits,
                        const uint64_t *r, const uint8_t *beta, size_t n)
{
    uint8_t *d, *d1;
    pc_work wk;
    scratch sc;
    size_t nd = n * SNN_ELL, e, k;
    int rc = -1;

    memset(&wk, 0, sizeof wk);
    memset(&sc, 0, sizeof sc);
    if (proto_begin(p, "PrivateCompare") != 0) return -1;
    {
        /* d (P2: d^0 and d^1), 64 per element */
        const scratch_arr plan[] = { SCRATCH_U8(d, n, SNN_ELL), SCRATCH_U8(d1, p->id == 2 ? n : 0, SNN_ELL) };
        SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "PrivateCompare"));
    }
    if (p->id != 2) {
        /* Steps 1-3 [P_j]: per element; step 3: P_j -> P2, one frame */
        for (e = 0; e < n; e++)
            pc_mask(snn_k01(p), &wk, d + e * SNN_ELL, xbits + e * SNN_ELL, r[e], beta[e], (uint8_t)p->id, p);
        SNN_GUARD(snn_send_zp(p, 2, SNN_PROTO_PC, 3, d, nd));
    } else {
        SNN_GUARD(snn_recv_zp(p, 0, SNN_PROTO_PC, 3, d, nd));
        SNN_GUARD(snn_recv_zp(p, 1, SNN_PROTO_PC, 3, d1, nd));
        /* Step 4 [P2]: d_i = d_i^0 + d_i^1; beta' = 1 iff some d_i = 0 */
        for (e = 0; e < n; e++) {
            unsigned zero = 0;
            for (k = 0; k < SNN_ELL; k++)
                zero |= (unsigned)(snn_add_p(d[e * SNN_ELL + k], d1[e * SNN_ELL + k]) == 0);
            beta_prime[e] = (uint8_t)zero;
        }
    }
    rc = 0;
cleanup:
    snn_wipe(&wk, sizeof wk);
    scratch_close(&sc);
    return rc;
}

/* ==== 7. Pi_ShareConvert [SNN, Alg. 4] =================================== */

/*
 * deal_bits -- P2 shares the 64 bits of x over Z_p (Pi_SC step 2, Pi_MSB
 * step 1): P0 gets s_i uniform from P2's own stream, P1 gets x[i] - s_i.
 * b0[i], b1[i] for bit i (i = 0 the LSB).
 */
static void deal_bits(snn_party *p, uint8_t b0[SNN_ELL], uint8_t b1[SNN_ELL], uint64_t x)
{
    size_t i;
    snn_prg_zp_n(&p->own, b0, SNN_ELL);
#ifdef SNN_TEST_HOOKS
    if (SNN_TEST_ON(p, SNN_TEST_DEAL_NO_MASK)) memset(b0, 0, SNN_ELL);     /* test runner only */
#endif
    for (i = 0; i < SNN_ELL; i++) b1[i] = snn_sub_p((uint8_t)(x >> i & 1), b0[i]);
}

/* P2's mask for a share it deals (P0's share), drawn by the caller: as
 * drawn, or 0 under the test hook SNN_TEST_DEAL_NO_MASK (test runner only). */
static uint64_t deal_mask(const snn_party *p, uint64_t drawn)
{
#ifdef SNN_TEST_HOOKS
    if (SNN_TEST_ON(p, SNN_TEST_DEAL_NO_MASK)) return 0;
#else
    (void)p;
#endif
    return drawn;
}

/* b * x over Z_{L-1} for a bit b in {0, 1} and x in [0, L-2]: no branch. */
static uint64_t bit_lm1(uint64_t b, uint64_t x) { return ((uint64_t)0 - b) & x; }

/*
 * snn_share_convert -- Pi_SC, implements [SNN, Algorithm 4], final version
 * (SPEC 2.4 [USE]).  Converts <a> over Z_L into <a> over Z_{L-1}.
 * Roles:  P0,P1 hold <a>^L and get <a>^{L-1} (fresh); P2 helps, learns
 *         eta' (masked by eta'') and passes NULL for y and a.
 * Pre:    a != L-1 (ensured by [SNN, Alg. 6, step 1]); for a = L-1 the
 *         output reconstructs to 0.
 * Comm:   step 1 P0,P1 -> P2: 1 Z_L each; step 2 P2 -> P0,P1: 64 Z_p and
 *         1 Z_{L-1} each; step 3 Pi_PC 128 bytes; step 4 P2 -> P0,P1:
 *         1 Z_{L-1} each.  Total 304 bytes per element, 4 rounds
 *         [SNN, Table 1: 4 l log p + 6 l bits, log p = 8].
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: WP Alg. 4 steps 7, 10-11 (PC on r, eta = 1 + eta' + eta'',
 *         -delta) are wrong; SPEC 4.1, 4.2 a [USE]: PC on r - 1,
 *         eta = eta' XOR eta'', theta = beta_0 + beta_1 - alpha - 1 + delta + eta.
 *         r is resampled until r != 0 (SPEC 4.2 b): with r = 0, r - 1 wraps
 *         and the output is wrong.
 */
int snn_share_convert(snn_party *p, uint64_t *y, const uint64_t *a, size_t n)
{
    /* [P_j] r_0, r_1, a~_j, beta_j, r - 1, <delta>_j, <eta'>_j, the bits
     * of x, eta''; [P2] a~_0, a~_1, <delta>_0, <delta>_1, <eta'>_0,
     * <eta'>_1, both parties' bits of x, eta' */
    uint64_t *r0, *r1, *at, *bj, *rm1, *delta, *etap, *at0, *at1, *delta0, *delta1, *etap0, *etap1;
    uint8_t *bits, *eta_pp, *bits0, *bits1, *eta_prime;
    scratch sc;
    size_t nb = n * SNN_ELL, e;
    const size_t pj = p->id != 2 ? n : 0, p2 = p->id == 2 ? n : 0;
    int j = p->id, rc = -1;
    const scratch_arr plan[] = {
        SCRATCH_U64(r0, pj, 1), SCRATCH_U64(r1, pj, 1), SCRATCH_U64(at, pj, 1), SCRATCH_U64(bj, pj, 1),
        SCRATCH_U64(rm1, pj, 1), SCRATCH_U64(delta, pj, 1), SCRATCH_U64(etap, pj, 1),
        SCRATCH_U8(bits, pj, SNN_ELL), SCRATCH_U8(eta_pp, pj, 1),
        SCRATCH_U64(at0, p2, 1), SCRATCH_U64(at1, p2, 1), SCRATCH_U64(delta0, p2, 1), SCRATCH_U64(delta1, p2, 1),
        SCRATCH_U64(etap0, p2, 1), SCRATCH_U64(etap1, p2, 1),
        SCRATCH_U8(bits0, p2, SNN_ELL), SCRATCH_U8(bits1, p2, SNN_ELL), SCRATCH_U8(eta_prime, p2, 1) };

    memset(&sc, 0, sizeof sc);
    if (proto_begin(p, "ShareConvert") != 0) return -1;
    SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "ShareConvert"));

    if (p->id != 2) {
        /* Common randomness [P0,P1] (K01): r_0, r_1 resampled together until
         * r = r_0 + r_1 != 0 (SPEC 4.2 b), and the bit eta''.  Test hooks
         * (test runner only): SNN_TEST_SC_R_ZERO makes the first draw r = 0,
         * SNN_TEST_SC_NO_RESAMPLE keeps it */
        for (e = 0; e < n; e++) {
#ifdef SNN_TEST_HOOKS
            int first = 1;
#endif
            do {
                r0[e] = snn_prg_u64(snn_k01(p));
                r1[e] = snn_prg_u64(snn_k01(p));
#ifdef SNN_TEST_HOOKS
                if (first && SNN_TEST_ON(p, SNN_TEST_SC_R_ZERO)) r1[e] = (uint64_t)0 - r0[e];
                first = 0;
                if (SNN_TEST_ON(p, SNN_TEST_SC_NO_RESAMPLE)) break;
#endif
            } while (r0[e] + r1[e] == 0);   /* branch on r [P0,P1]: common randomness */
            eta_pp[e] = snn_prg_bit(snn_k01(p));
#ifdef SNN_TEST_HOOKS
            if (SNN_TEST_ON(p, SNN_TEST_SC_ETA_ZERO)) eta_pp[e] = 0;        /* test runner only */
#endif
        }
        /* Step 1 [P_j]: a~_j = a_j + r_j, beta_j = wrap(a_j, r_j, L); a~_j to P2 */
        for (e = 0; e < n; e++) {
            const uint64_t rj = j ? r1[e] : r0[e];
            at[e] = a[e] + rj;
            bj[e] = snn_wrap(a[e], rj);
        }
        SNN_GUARD(snn_send_zl(p, 2, SNN_PROTO_SC, 1, at, n));
        /* Step 2 [P_j]: Z_p shares of the bits of x, Z_{L-1} shares of delta */
        SNN_GUARD(snn_recv_zp(p, 2, SNN_PROTO_SC, 2, bits, nb));
        SNN_GUARD(snn_recv_lm1(p, 2, SNN_PROTO_SC, 2, delta, n));
        /* Step 3 [P0,P1]: Pi_PC(bits of x, r - 1, eta''); P2 learns eta' */
        for (e = 0; e < n; e++) rm1[e] = r0[e] + r1[e] - 1;
        SNN_GUARD(snn_private_compare(p, NULL, bits, rm1, eta_pp, n));
        /* Step 4 [P_j]: shares of eta' over Z_{L-1} */
        SNN_GUARD(snn_recv_lm1(p, 2, SNN_PROTO_SC, 4, etap, n));
        /* Step 5 [P_j], over Z_{L-1}, with alpha = wrap(r_0, r_1, L) [P0,P1]:
         *   eta_j   = eta'_j + (1-j) eta'' - 2 eta'' eta'_j     (share of eta' XOR eta'')
         *   theta_j = beta_j + (1-j)(-alpha - 1) + delta_j + eta_j
         *   y_j     = a_j - theta_j + u_j,  u a Z_{L-1} zero-share from K01 */
        for (e = 0; e < n; e++) {
            const uint64_t nj = (uint64_t)(1 - j), alpha = snn_wrap(r0[e], r1[e]);
#ifdef SNN_TEST_HOOKS
            const uint64_t u = SNN_TEST_ON(p, SNN_TEST_NO_REFRESH) ? 0 : snn_prg_lm1(snn_k01(p));   /* test hook */
#else
            const uint64_t u = snn_prg_lm1(snn_k01(p));
#endif
            uint64_t eta, theta;
            eta = snn_sub_lm1(snn_add_lm1(etap[e], bit_lm1(nj, eta_pp[e])),
                              bit_lm1(eta_pp[e], snn_add_lm1(etap[e], etap[e])));
            theta = snn_add_lm1(snn_add_lm1(snn_add_lm1(bj[e], bit_lm1(nj, snn_neg_lm1(1 + alpha))),
                                            delta[e]), eta);
            y[e] = snn_add_lm1(snn_sub_lm1(snn_red_lm1(a[e]), theta), j ? snn_neg_lm1(u) : u);
        }
    } else {
        /* Step 1 [P2]: a~_0, a~_1 */
        SNN_GUARD(snn_recv_zl(p, 0, SNN_PROTO_SC, 1, at0, n));
        SNN_GUARD(snn_recv_zl(p, 1, SNN_PROTO_SC, 1, at1, n));
        /* Step 2 [P2]: x = a~_0 + a~_1, delta = wrap(a~_0, a~_1, L); shares of
         * the 64 bits of x over Z_p and of delta over Z_{L-1}, from P2's own stream */
        for (e = 0; e < n; e++) {
            const uint64_t x = at0[e] + at1[e];
            deal_bits(p, bits0 + e * SNN_ELL, bits1 + e * SNN_ELL, x);
            delta0[e] = deal_mask(p, snn_prg_lm1(&p->own));
            delta1[e] = snn_sub_lm1(snn_wrap(at0[e], at1[e]), delta0[e]);
        }
        SNN_GUARD(snn_send_zp(p, 0, SNN_PROTO_SC, 2, bits0, nb));
        SNN_GUARD(snn_send_lm1(p, 0, SNN_PROTO_SC, 2, delta0, n));
        SNN_GUARD(snn_send_zp(p, 1, SNN_PROTO_SC, 2, bits1, nb));
        SNN_GUARD(snn_send_lm1(p, 1, SNN_PROTO_SC, 2, delta1, n));
        /* Step 3 [P2]: Pi_PC; P2 learns eta' = eta'' XOR (x > r - 1) */
        SNN_GUARD(snn_private_compare(p, eta_prime, NULL, NULL, NULL, n));
        /* Step 4 [P2]: shares of eta' over Z_{L-1} to P0 and P1 */
        for (e = 0; e < n; e++) {
            etap0[e] = deal_mask(p, snn_prg_lm1(&p->own));
            etap1[e] = snn_sub_lm1(eta_prime[e], etap0[e]);
        }
        SNN_GUARD(snn_send_lm1(p, 0, SNN_PROTO_SC, 4, etap0, n));
        SNN_GUARD(snn_send_lm1(p, 1, SNN_PROTO_SC, 4, etap1, n));
        /* Step 5: n/a for P2, which has no output */
    }
    rc = 0;
cleanup:
    scratch_close(&sc);
    return rc;
}

/* ==== 8. Pi_ComputeMSB [SNN, Alg. 5] ===================================== */

/*
 * snn_compute_msb -- Pi_MSB, implements [SNN, Algorithm 5], final version
 * (SPEC 2.5).  alpha = MSB(a) = [a >= 2^63] for a over Z_{L-1}, output
 * over Z_L.
 * Roles:  P0,P1 hold <a>^{L-1} and get <MSB(a)>^L (fresh); P2 deals x,
 *         learns beta' (masked by beta) and passes NULL for alpha and a.
 * Pre:    a in Z_{L-1} (a share of 2^64-1 is read as 0).
 * Comm:   step 1 P2 -> P0,P1: 1 Z_{L-1} + 64 Z_p + 1 Z_L each; step 2
 *         P0 <-> P1: 1 Z_{L-1} each way; step 3 Pi_PC 128 bytes; step 4
 *         P2 -> P0,P1: 1 Z_L each; step 6 element-wise MatMul 40 bytes.
 *         Total 360 bytes per element [SNN, Table 1: 4 l log p + 13 l bits],
 *         5 rounds: steps 1, 2, 3, 4 and 6 wait on each other in turn;
 *         step 6's Z_1 waits on nothing (SPEC 4.5 i).
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: the WP listing outputs over Z_2; SPEC 4.1 [USE]: over Z_L
 *         through one MatMul (step 6), as Table 1 counts.
 */
int snn_compute_msb(snn_party *p, uint64_t *alpha, const uint64_t *a, size_t n)
{
    /* [P2] <x>_0, <x>_1, <x[0]>_0, <x[0]>_1, <beta'>_0, <beta'>_1, both
     * parties' bits of x, beta'; [P_j] <x>_j, <x[0]>_j, c_j, c_{1-j}, c,
     * <beta'>_j, gamma, delta, theta, the bits of x, beta */
    uint64_t *xs0, *xs1, *x00, *x01, *bp0, *bp1, *xs, *x0, *cj, *co, *c, *bp, *gamma, *delta, *theta;
    uint8_t *bits0, *bits1, *beta_prime, *bits, *beta;
    scratch sc;
    size_t nb = n * SNN_ELL, e;
    const size_t pj = p->id != 2 ? n : 0, p2 = p->id == 2 ? n : 0;
    int j = p->id, rc = -1;
    const scratch_arr plan[] = {
        SCRATCH_U64(xs0, p2, 1), SCRATCH_U64(xs1, p2, 1), SCRATCH_U64(x00, p2, 1), SCRATCH_U64(x01, p2, 1),
        SCRATCH_U64(bp0, p2, 1), SCRATCH_U64(bp1, p2, 1),
        SCRATCH_U8(bits0, p2, SNN_ELL), SCRATCH_U8(bits1, p2, SNN_ELL), SCRATCH_U8(beta_prime, p2, 1),
        SCRATCH_U64(xs, pj, 1), SCRATCH_U64(x0, pj, 1), SCRATCH_U64(cj, pj, 1), SCRATCH_U64(co, pj, 1),
        SCRATCH_U64(c, pj, 1), SCRATCH_U64(bp, pj, 1), SCRATCH_U64(gamma, pj, 1), SCRATCH_U64(delta, pj, 1),
        SCRATCH_U64(theta, pj, 1), SCRATCH_U8(bits, pj, SNN_ELL), SCRATCH_U8(beta, pj, 1) };

    memset(&sc, 0, sizeof sc);
    if (proto_begin(p, "ComputeMSB") != 0) return -1;
    SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "ComputeMSB"));

    if (p->id == 2) {
        /* Step 1 [P2]: x uniform in Z_{L-1}; shares of x over Z_{L-1}, of its
         * 64 bits over Z_p and of x[0] over Z_L, from P2's own stream */
        for (e = 0; e < n; e++) {
#ifdef SNN_TEST_HOOKS
            const uint64_t x = SNN_TEST_ON(p, SNN_TEST_MSB_X_ZERO) ? 0 * snn_prg_lm1(&p->own)   /* test hook */
                                                                    : snn_prg_lm1(&p->own);
#else
            const uint64_t x = snn_prg_lm1(&p->own);
#endif
            xs0[e] = deal_mask(p, snn_prg_lm1(&p->own));
            xs1[e] = snn_sub_lm1(x, xs0[e]);
            deal_bits(p, bits0 + e * SNN_ELL, bits1 + e * SNN_ELL, x);
            x00[e] = deal_mask(p, snn_prg_u64(&p->own));
            x01[e] = (x & 1) - x00[e];
        }
        SNN_GUARD(snn_send_lm1(p, 0, SNN_PROTO_MSB, 1, xs0, n));
        SNN_GUARD(snn_send_zp(p, 0, SNN_PROTO_MSB, 1, bits0, nb));
        SNN_GUARD(snn_send_zl(p, 0, SNN_PROTO_MSB, 1, x00, n));
        SNN_GUARD(snn_send_lm1(p, 1, SNN_PROTO_MSB, 1, xs1, n));
        SNN_GUARD(snn_send_zp(p, 1, SNN_PROTO_MSB, 1, bits1, nb));
        SNN_GUARD(snn_send_zl(p, 1, SNN_PROTO_MSB, 1, x01, n));
        /* Step 2: n/a for P2 */
        /* Step 3 [P2]: Pi_PC; P2 learns beta' = beta XOR (x > c) */
        SNN_GUARD(snn_private_compare(p, beta_prime, NULL, NULL, NULL, n));
        /* Step 4 [P2]: shares of beta' over Z_L to P0 and P1 */
        for (e = 0; e < n; e++) {
            bp0[e] = deal_mask(p, snn_prg_u64(&p->own));
            bp1[e] = beta_prime[e] - bp0[e];
        }
        SNN_GUARD(snn_send_zl(p, 0, SNN_PROTO_MSB, 4, bp0, n));
        SNN_GUARD(snn_send_zl(p, 1, SNN_PROTO_MSB, 4, bp1, n));
        /* Step 5: n/a for P2.  Step 6 [P2]: deal the MatMul triple */
        SNN_GUARD(snn_mul(p, NULL, NULL, NULL, n));
        /* Step 7: n/a for P2 */
    } else {
        /* Step 1 [P_j]: <x>^{L-1}_j, <x[i]>^p_j, <x[0]>^L_j from P2 */
        SNN_GUARD(snn_recv_lm1(p, 2, SNN_PROTO_MSB, 1, xs, n));
        SNN_GUARD(snn_recv_zp(p, 2, SNN_PROTO_MSB, 1, bits, nb));
        SNN_GUARD(snn_recv_zl(p, 2, SNN_PROTO_MSB, 1, x0, n));
        /* Step 2 [P_j]: y_j = 2 a_j, c_j = y_j + x_j (mod L-1); exchange, and
         * c = c_0 + c_1 = 2a + x mod (L-1) [P0,P1] */
        for (e = 0; e < n; e++) {
            const uint64_t aj = snn_red_lm1(a[e]);
            cj[e] = snn_add_lm1(snn_add_lm1(aj, aj), xs[e]);
        }
        SNN_GUARD(snn_send_lm1(p, 1 - j, SNN_PROTO_MSB, 2, cj, n));
        SNN_GUARD(snn_recv_lm1(p, 1 - j, SNN_PROTO_MSB, 2, co, n));
        for (e = 0; e < n; e++) c[e] = snn_add_lm1(cj[e], co[e]);
        /* Step 3 [P0,P1]: beta from K01; Pi_PC(bits of x, c, beta).  c <= L-2,
         * so PC's r = 2^l - 1 case never arises */
        snn_prg_bit_n(snn_k01(p), beta, n);
#ifdef SNN_TEST_HOOKS
        if (SNN_TEST_ON(p, SNN_TEST_MSB_BETA_ZERO)) memset(beta, 0, n);     /* test runner only */
#endif
        SNN_GUARD(snn_private_compare(p, NULL, bits, c, beta, n));
        /* Step 4 [P_j]: <beta'>^L_j from P2 */
        SNN_GUARD(snn_recv_zl(p, 2, SNN_PROTO_MSB, 4, bp, n));
        /* Step 5 [P_j], over Z_L (beta, c public to P0,P1):
         *   gamma_j = j beta + (1 - 2 beta) beta'_j      (share of beta XOR beta' = [x > c])
         *   delta_j = j c[0] + (1 - 2 c[0]) <x[0]>_j      (share of c[0] XOR x[0]) */
        for (e = 0; e < n; e++) {
            const uint64_t b = beta[e], c0 = c[e] & 1, uj = (uint64_t)j;
            gamma[e] = uj * b + (1 - 2 * b) * bp[e];
            delta[e] = uj * c0 + (1 - 2 * c0) * x0[e];
        }
        /* Step 6 [all]: theta = Pi_MatMul(gamma, delta), element-wise */
        SNN_GUARD(snn_mul(p, theta, gamma, delta, n));
        /* Step 7 [P_j]: alpha_j = gamma_j + delta_j - 2 theta_j + u_j (share of gamma XOR delta) */
        for (e = 0; e < n; e++) alpha[e] = gamma[e] + delta[e] - 2 * theta[e];
        snn_refresh(p, alpha, n);
    }
    rc = 0;
cleanup:
    scratch_close(&sc);
    return rc;
}

/* ==== 9. Pi_DReLU, Pi_ReLU [SNN, Alg. 6, 7] ============================== */

/*
 * snn_drelu -- Pi_DReLU, implements [SNN, Algorithm 6].
 * alpha = [s(a) >= 0] over Z_L (DReLU(0) = 1).
 * Roles:  P0,P1 hold <a> and get <alpha> (fresh); P2 helps and passes NULL.
 * Pre:    -2^62 <= s(a) < 2^62 (SPEC 2.6, 4.2 c).  Outside it the sign is
 *         lost: 2a wraps, e.g. 2^62 -> 0, 2^63 -> 1, -2^62 - 5 -> 1.
 * Comm:   Pi_SC (304 bytes) then Pi_MSB (360 bytes): 664 bytes per element
 *         [SNN, Table 1: 8 l log p + 19 l bits], 8 rounds: P2's MSB step-1
 *         frames carry the same round stamp as SC's step 4 (P2 receives
 *         nothing in between), so they run in parallel with SC as SPEC 3 says.
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: none.
 */
int snn_drelu(snn_party *p, uint64_t *alpha, const uint64_t *a, size_t n)
{
    uint64_t *c, *y, *msb;
    scratch sc;
    size_t e;
    int rc = -1;

    memset(&sc, 0, sizeof sc);
    if (proto_begin(p, "DReLU") != 0) return -1;
    {
        const scratch_arr plan[] = { SCRATCH_U64(c, n, 1), SCRATCH_U64(y, n, 1), SCRATCH_U64(msb, n, 1) };
        SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "DReLU"));
    }
    /* Step 1 [P_j]: c_j = 2 a_j mod L; c is even, so c != L-1 (SC's precondition) */
    if (p->id != 2)
        for (e = 0; e < n; e++) c[e] = 2 * a[e];
    /* Step 2 [all]: <y>^{L-1} = Pi_SC(c) */
    SNN_GUARD(snn_share_convert(p, y, c, n));
    /* Step 3 [all]: <alpha>^L = Pi_MSB(y) = MSB(2a) */
    SNN_GUARD(snn_compute_msb(p, msb, y, n));
    /* Step 4 [P_j]: alpha_j = j - MSB_j + u_j */
    if (p->id != 2) {
        for (e = 0; e < n; e++) alpha[e] = (uint64_t)p->id - msb[e];
        snn_refresh(p, alpha, n);
    }
    rc = 0;
cleanup:
    scratch_close(&sc);
    return rc;
}

/*
 * snn_relu -- Pi_ReLU, implements [SNN, Algorithm 7].
 * y = a if s(a) >= 0, else 0, exactly (no truncation); drelu, if not NULL,
 * gets the DReLU shares for the backward pass.
 * Roles:  P0,P1 hold <a> and get <y> (fresh); P2 helps and passes NULL.
 * Pre:    as snn_drelu.
 * Comm:   Pi_DReLU (664 bytes) + one element-wise MatMul (40 bytes):
 *         704 bytes per element [SNN, Table 1: 8 l log p + 24 l bits].
 *         9 rounds: Table 1 counts DReLU + 2 = 10; the product takes one
 *         (SPEC 4.5 i).
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: the round count above (measured, Lamport stamps; SPEC 4.5 c).
 */
int snn_relu(snn_party *p, uint64_t *y, uint64_t *drelu, const uint64_t *a, size_t n)
{
    uint64_t *alpha, *c;
    scratch sc;
    size_t e;
    int rc = -1;

    memset(&sc, 0, sizeof sc);
    if (proto_begin(p, "ReLU") != 0) return -1;
    {
        const scratch_arr plan[] = { SCRATCH_U64(alpha, n, 1), SCRATCH_U64(c, n, 1) };
        SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "ReLU"));
    }
    /* Step 1 [all]: alpha = Pi_DReLU(a) */
    SNN_GUARD(snn_drelu(p, alpha, a, n));
    /* Step 2 [all]: c = Pi_MatMul(alpha, a), element-wise, no truncation */
    SNN_GUARD(snn_mul(p, c, alpha, a, n));
    /* Step 3 [P_j]: y_j = c_j + u_j; keep alpha for the backward pass */
    if (p->id != 2) {
        for (e = 0; e < n; e++) y[e] = c[e];
        snn_refresh(p, y, n);
        if (drelu) memcpy(drelu, alpha, n * sizeof *alpha);
    }
    rc = 0;
cleanup:
    scratch_close(&sc);
    return rc;
}

/* ==== 10. Pi_Division [SNN, Alg. 8 (a)] ================================== */

/*
 * snn_division -- Pi_Div, implements [SNN, Algorithm 8], final ePrint
 * version (a) (SPEC 2.8 [USE]): long division, q = floor(x / y).
 * Roles:  P0,P1 hold <x>, <y> and get <q> (fresh); P2 helps and passes NULL.
 * Pre:    0 <= x < 2^62, y > 0 and 2^(ell_d) y < 2^62, so every DReLU input
 *         stays in its domain; 0 <= ell_d <= 62.
 *         If q >= 2^ell_d the output saturates at 2^ell_d - 1: then at
 *         every i, x - u_{i+1} >= 2^ell_d y - (2^ell_d - 2^(i+1)) y
 *         = 2^(i+1) y > 2^i y, so every beta_i = 1 (also for y = 0).
 * Comm:   per iteration Pi_DReLU + one element-wise MatMul: 704 ell_d bytes
 *         per element [SNN, Table 1: (8 l log p + 24 l) ell_d bits].
 *         9 ell_d rounds; Table 1 says 10 ell_d (see snn_relu: the
 *         product takes one round, SPEC 4.5 i).
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: the round count above.  Version (b) (WP/CODE) is not
 *         implemented.
 */
int snn_division(snn_party *p, uint64_t *q, const uint64_t *x, const uint64_t *y,
                 size_t n, unsigned ell_d)
{
    uint64_t *u, *z, *beta, *ty, *v, *k;
    scratch sc;
    size_t e;
    unsigned i;
    int rc = -1, pj = p->id != 2;

    memset(&sc, 0, sizeof sc);
    if (proto_begin(p, "Division") != 0) return -1;
    if (ell_d > 62)
        return snn_fail(p, SNN_ERR_ARG, "Division: ell_d = %u, must be at most 62", ell_d);
    {
        /* u_i, z_i, beta_i, 2^i y, v_i and the running sum of the k_i */
        const scratch_arr plan[] = { SCRATCH_U64(u, n, 1), SCRATCH_U64(z, n, 1), SCRATCH_U64(beta, n, 1),
                                     SCRATCH_U64(ty, n, 1), SCRATCH_U64(v, n, 1), SCRATCH_U64(k, n, 1) };
        SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "Division"));
    }
    /* Step 0 [P_j]: <u_{ell_d}> = 0 (the scratch block is zeroed), sum of k_i = 0 */
    for (i = ell_d; i-- > 0;) {
        /* Step 1 [P_j]: z_i = x - u_{i+1} - 2^i y + w_i, w_i a zero-share from K01 */
        if (pj) {
            for (e = 0; e < n; e++) {
                ty[e] = y[e] << i;
                z[e] = x[e] - u[e] - ty[e];
            }
            snn_refresh(p, z, n);
        }
        /* Step 2 [all]: beta_i = Pi_DReLU(z_i) */
        SNN_GUARD(snn_drelu(p, beta, z, n));
        /* Step 3 [all]: v_i = Pi_MatMul(beta_i, 2^i y), element-wise, no truncation */
        SNN_GUARD(snn_mul(p, v, beta, ty, n));
        if (pj)
            for (e = 0; e < n; e++) {
                /* Step 4 [P_j]: k_i = 2^i beta_i, summed as it is made */
                k[e] += beta[e] << i;
                /* Step 5 [P_j]: u_i = u_{i+1} + v_i */
                u[e] += v[e];
            }
    }
    /* Output [P_j]: q = sum_i k_i + s, s a zero-share from K01 */
    if (pj) {
        for (e = 0; e < n; e++) q[e] = k[e];
        snn_refresh(p, q, n);
    }
    rc = 0;
cleanup:
    scratch_close(&sc);
    return rc;
}

/* ==== 11. Pi_Maxpool, Pi_DMaxpool [SNN, Alg. 9, 10] ====================== */

/*
 * snn_maxpool -- Pi_Maxpool, implements [SNN, Algorithm 9] (SPEC 2.9).
 * For each of nwin windows of k contiguous elements of x: max, the signed
 * maximum, and ind, its 0-based index; ties go to the later element.
 * Roles:  P0,P1 hold <x> and get <max>, <ind> (fresh); P2 helps and passes NULL.
 * Pre:    k >= 1; within a window |s(x_i) - s(x_m)| < 2^62 (DReLU's domain).
 * Comm:   per step i = 2..k: Pi_DReLU on nwin elements + one element-wise
 *         MatMul on 2 nwin (max and ind together): 744 (k-1) bytes per
 *         window [SNN, Table 1: (8 l log p + 29 l)(n-1) bits], 9 (k-1) rounds.
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: WP Alg. 9 steps 3-7 (diff = max - x_i) keep the earlier
 *         element; SPEC 4.1 [USE]: max + DReLU(x_i - max)(x_i - max), ties to
 *         the later element.  The two SelectShares of a step share one MatMul.
 * Steps:  SPEC 2.9 does not number them; here 1 start, then for each
 *         i = 2..k: 2 w, 3 beta, 4 max, 5 ind; 6 output.
 */
int snn_maxpool(snn_party *p, uint64_t *max, uint64_t *ind, const uint64_t *x,
                size_t nwin, size_t k)
{
    uint64_t *mx, *id, *w, *beta, *bb, *rhs, *prod;
    scratch sc;
    size_t n2 = 0, e, i;
    int rc = -1, pj = p->id != 2;

    memset(&sc, 0, sizeof sc);
    if (proto_begin(p, "Maxpool") != 0) return -1;
    if (k == 0) return snn_fail(p, SNN_ERR_ARG, "Maxpool: window size k = 0");
    if (snn_size_mul(&n2, nwin, k) != 0 || snn_size_mul(&n2, nwin, 2) != 0)
        return snn_fail(p, SNN_ERR_ARG, "Maxpool: %zu windows of %zu is too many", nwin, k);
    {
        /* max, ind, w, beta (nwin each); [beta; beta], [w; i - ind] and
         * their product (2 nwin each) */
        const scratch_arr plan[] = { SCRATCH_U64(mx, nwin, 1), SCRATCH_U64(id, nwin, 1), SCRATCH_U64(w, nwin, 1),
                                     SCRATCH_U64(beta, nwin, 1), SCRATCH_U64(bb, nwin, 2),
                                     SCRATCH_U64(rhs, nwin, 2), SCRATCH_U64(prod, nwin, 2) };
        SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "Maxpool"));
    }
    /* Step 1 [P_j]: max = x_1, ind = 0 */
    if (pj)
        for (e = 0; e < nwin; e++) mx[e] = x[e * k];
    for (i = 1; i < k; i++) {
        /* Step 2 [P_j]: w = x_i - max */
        if (pj)
            for (e = 0; e < nwin; e++) w[e] = x[e * k + i] - mx[e];
        /* Step 3 [all]: beta = Pi_DReLU(w) = [x_i >= max] */
        SNN_GUARD(snn_drelu(p, beta, w, nwin));
        /* Steps 4-5 [all]: max <- SS(beta, max, x_i) = max + beta w and
         * ind <- SS(beta, ind, i) = ind + beta (i - ind), as one element-wise
         * MatMul of [beta; beta] and [w; i - ind]; the public index i is
         * shared as P0: i, P1: 0 */
        if (pj)
            for (e = 0; e < nwin; e++) {
                bb[e] = bb[nwin + e] = beta[e];
                rhs[e] = w[e];
                rhs[nwin + e] = (p->id == 0 ? (uint64_t)i : 0) - id[e];
            }
        SNN_GUARD(snn_mul(p, prod, bb, rhs, n2));
        if (pj)
            for (e = 0; e < nwin; e++) {
                mx[e] += prod[e];
                id[e] += prod[nwin + e];
            }
    }
    /* Step 6 [P_j]: output max + u and ind + v, zero-shares from K01 */
    if (pj) {
        memcpy(max, mx, nwin * sizeof *mx);
        memcpy(ind, id, nwin * sizeof *id);
        snn_refresh(p, max, nwin);
        snn_refresh(p, ind, nwin);
    }
    rc = 0;
cleanup:
    scratch_close(&sc);
    return rc;
}

/*
 * snn_dmaxpool -- Pi_DMaxpool, implements [SNN, Algorithm 10] (SPEC 2.10).
 * onehot (nwin x k) = e_ind for each window, as 0/1 integers over Z_L.
 * The window size k is the paper's n.
 * Roles:  P0,P1 hold <ind> (from snn_maxpool) and get <e_ind> (fresh); P2
 *         reconstructs t = ind + r mod L, uniform on Z_L whatever ind is
 *         (r is uniform from K01), uses only t mod k, and passes NULL.
 * Pre:    k | 2^64, i.e. k a power of two (else SNN_ERR_ARG); 0 <= ind < k.
 * Comm:   step 2 P0,P1 -> P2: 1 Z_L each; step 3 P2 -> P0,P1: k Z_L each.
 *         16 + 16 k bytes per window [SNN, Table 1: 2(n+1) l bits],
 *         2 rounds on top of its input.
 * Returns 0, or -1 with p->err set (sticky).
 * Deviations: none; n not dividing 2^64 (the paper's "full version") is
 *         refused.
 */
int snn_dmaxpool(snn_party *p, uint64_t *onehot, const uint64_t *ind, size_t nwin, size_t k)
{
    uint64_t *r, *t, *t1, *E, *E1;
    scratch sc;
    size_t nk = 0, e, m;
    int rc = -1;

    memset(&sc, 0, sizeof sc);
    if (proto_begin(p, "DMaxpool") != 0) return -1;
    if (k == 0 || (k & (k - 1)) != 0)
        return snn_fail(p, SNN_ERR_ARG, "DMaxpool: window size k = %zu does not divide 2^64 "
                        "(must be a power of two)", k);
    if (snn_size_mul(&nk, nwin, k) != 0)
        return snn_fail(p, SNN_ERR_ARG, "DMaxpool: %zu windows of %zu is too many", nwin, k);
    {
        /* t and E; P0/P1 also r, P2 also t_1 and E_1 */
        const size_t pj = p->id != 2 ? nwin : 0, p2 = p->id == 2 ? nwin : 0;
        const scratch_arr plan[] = { SCRATCH_U64(t, nwin, 1), SCRATCH_U64(E, nwin, k), SCRATCH_U64(r, pj, 1),
                                     SCRATCH_U64(t1, p2, 1), SCRATCH_U64(E1, p2, k) };
        SNN_GUARD(SCRATCH_OPEN(p, &sc, plan, "DMaxpool"));
    }
    if (p->id != 2) {
        /* Step 1: n/a, <ind> is the input (from Pi_Maxpool) */
        /* Step 2 [P_j]: r from K01; P0 sends <ind>_0 + r, P1 sends <ind>_1 */
        for (e = 0; e < nwin; e++) {
            r[e] = snn_prg_u64(snn_k01(p));
#ifdef SNN_TEST_HOOKS
            if (SNN_TEST_ON(p, SNN_TEST_DMP_NO_R)) r[e] = 0;               /* test runner only */
#endif
            t[e] = p->id == 0 ? ind[e] + r[e] : ind[e];
        }
        SNN_GUARD(snn_send_zl(p, 2, SNN_PROTO_DMAXPOOL, 2, t, nwin));
        /* Step 3 [P_j]: shares of E = e_(t mod k), t = ind + r mod L */
        SNN_GUARD(snn_recv_zl(p, 2, SNN_PROTO_DMAXPOOL, 3, E, nk));
        /* Step 4 [P_j]: g = r mod k; D_j[m] = E_j[(m + g) mod k] (rotate left by g).
         * Index on g [P0,P1]: r is common randomness both hold; P2 never sees it */
        for (e = 0; e < nwin; e++) {
            const size_t g = (size_t)(r[e] & (uint64_t)(k - 1));
            for (m = 0; m < k; m++) onehot[e * k + m] = E[e * k + ((m + g) & (k - 1))];
        }
        /* Step 5 [P_j]: D_j + U_j, U a zero-share from K01 */
        snn_refresh(p, onehot, nk);
    } else {
        /* Step 1: n/a for P2 (r is P0's and P1's common randomness) */
        /* Step 2 [P2]: <ind>_0 + r and <ind>_1 */
        SNN_GUARD(snn_recv_zl(p, 0, SNN_PROTO_DMAXPOOL, 2, t, nwin));
        SNN_GUARD(snn_recv_zl(p, 1, SNN_PROTO_DMAXPOOL, 2, t1, nwin));
        /* Step 3 [P2]: t = ind + r mod L, then t mod k (k | L, so this is
         * (ind + r) mod k); E = e_(t mod k) shared over Z_L from P2's own
         * stream.  Index on t mod k [P2]: P2 computed it; it is uniform */
        for (e = 0; e < nwin; e++) {
            const size_t hot = (size_t)((t[e] + t1[e]) & (uint64_t)(k - 1));
            for (m = 0; m < k; m++) {
                E[e * k + m] = deal_mask(p, snn_prg_u64(&p->own));
                E1[e * k + m] = (uint64_t)(m == hot) - E[e * k + m];
            }
        }
        SNN_GUARD(snn_send_zl(p, 0, SNN_PROTO_DMAXPOOL, 3, E, nk));
        SNN_GUARD(snn_send_zl(p, 1, SNN_PROTO_DMAXPOOL, 3, E1, nk));
        /* Steps 4-5: n/a for P2 */
    }
    rc = 0;
cleanup:
    scratch_close(&sc);
    return rc;
}
