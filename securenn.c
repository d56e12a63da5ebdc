/*
 * securenn.c -- rings, the ChaCha20 PRG, sharing, and every protocol of
 * [SNN] (Wagh, Gupta, Chandran, PoPETs 2019(3) / ePrint 2018/442), in the
 * order of the paper.  Step numbers are those of ../shared/SPEC.md, section 2.
 *
 * Sections (bottom-up: primitives before their users):
 *   1. Fixed point                       [SNN, App. A], SPEC 1.3
 *   2. ChaCha20 and the PRG              [RFC8439 2.3], SPEC 1.4
 *   3. Pair streams, sharing, reveal, zero-share refresh   SPEC 1.1
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
 */
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

static uint32_t rotl32(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

static uint32_t load32_le(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void store32_le(uint8_t *b, uint32_t x)
{
    b[0] = (uint8_t)x; b[1] = (uint8_t)(x >> 8); b[2] = (uint8_t)(x >> 16); b[3] = (uint8_t)(x >> 24);
}

/* The quarter round [RFC8439 2.1]. */
#define QR(a, b, c, d)                                  \
    do {                                                \
        a += b; d ^= a; d = rotl32(d, 16);              \
        c += d; b ^= c; b = rotl32(b, 12);              \
        a += b; d ^= a; d = rotl32(d, 8);               \
        c += d; b ^= c; b = rotl32(b, 7);               \
    } while (0)

/*
 * snn_chacha20_block -- the ChaCha20 block function [RFC8439 2.3]:
 * 20 rounds (10 column + diagonal double rounds) over the state
 * constants | key | counter | nonce, plus the input state.
 */
void snn_chacha20_block(uint32_t out[16], const uint32_t key[8], uint32_t counter, const uint32_t nonce[3])
{
    uint32_t s[16], x[16];
    int i;

    s[0] = 0x61707865; s[1] = 0x3320646e; s[2] = 0x79622d32; s[3] = 0x6b206574;
    for (i = 0; i < 8; i++) s[4 + i] = key[i];
    s[12] = counter;
    s[13] = nonce[0]; s[14] = nonce[1]; s[15] = nonce[2];
    memcpy(x, s, sizeof x);
    for (i = 0; i < 10; i++) {
        QR(x[0], x[4], x[8],  x[12]); QR(x[1], x[5], x[9],  x[13]);
        QR(x[2], x[6], x[10], x[14]); QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]); QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8],  x[13]); QR(x[3], x[4], x[9],  x[14]);
    }
    for (i = 0; i < 16; i++) out[i] = x[i] + s[i];
    snn_wipe(x, sizeof x);
    snn_wipe(s, sizeof s);
}

/*
 * snn_prg_init -- a keystream from a 256-bit key.  Nonce word 0 holds
 * stream_id, so streams under one key never overlap; words 1-2 start at 0
 * and word 1 takes the carry of the 32-bit block counter, so a stream runs
 * for 2^64 blocks rather than the 2^32 of one RFC 8439 nonce.
 */
void snn_prg_init(snn_prg *g, const uint8_t key[32], uint32_t stream_id)
{
    int i;
    for (i = 0; i < 8; i++) g->key[i] = load32_le(key + 4 * i);
    g->nonce[0] = stream_id;
    g->nonce[1] = 0;
    g->nonce[2] = 0;
    g->counter = 0;
    g->used = 64;
}

static void prg_refill(snn_prg *g)
{
    uint32_t w[16];
    int i;
    snn_chacha20_block(w, g->key, g->counter, g->nonce);
    for (i = 0; i < 16; i++) store32_le(g->block + 4 * i, w[i]);
    snn_wipe(w, sizeof w);
    g->counter++;
    if (g->counter == 0) g->nonce[1]++;   /* carry: see snn_prg_init */
    g->used = 0;
}

/* snn_prg_bytes -- the next n bytes of the keystream. */
void snn_prg_bytes(snn_prg *g, uint8_t *out, size_t n)
{
    while (n > 0) {
        size_t take;
        if (g->used == 64) prg_refill(g);
        take = 64 - g->used;
        if (take > n) take = n;
        memcpy(out, g->block + g->used, take);
        g->used += (unsigned)take;
        out += take;
        n -= take;
    }
}

static uint8_t prg_byte(snn_prg *g)
{
    if (g->used == 64) prg_refill(g);
    return g->block[g->used++];
}

/* snn_prg_u64 -- uniform in Z_L: eight bytes, little-endian. */
uint64_t snn_prg_u64(snn_prg *g)
{
    uint8_t b[8];
    uint64_t x = 0;
    int i;
    snn_prg_bytes(g, b, 8);
    for (i = 7; i >= 0; i--) x = x << 8 | b[i];
    return x;
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
    uint64_t lim = SNN_LM1 - (SNN_LM1 % bound + 1) % bound;  /* 2^64 - (2^64 mod bound) - 1 */
    uint64_t x;
    do x = snn_prg_u64(g); while (x > lim);
    return x % bound;
}

/* snn_prg_zp -- uniform in Z_p: a byte, rejected if >= 201 = 3*67 (SPEC 1.4). */
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
    do b = snn_prg_zp(g); while (b == 0);
    return b;
}

/* snn_prg_bit -- one uniform bit (the low bit of a fresh byte). */
uint8_t snn_prg_bit(snn_prg *g)
{
    return (uint8_t)(prg_byte(g) & 1);
}

/*
 * snn_prg_perm -- a uniform permutation of 0..n-1 (n <= 256): Fisher-Yates,
 * each index drawn without bias by rejection.
 */
void snn_prg_perm(snn_prg *g, uint8_t *pi, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) pi[i] = (uint8_t)i;
    for (i = n; i > 1; i--) {
        unsigned bound = (unsigned)i, lim = 256 - 256 % bound, b;
        size_t k;
        uint8_t t;
        do b = prg_byte(g); while (b >= lim);
        k = b % bound;
        t = pi[i - 1]; pi[i - 1] = pi[k]; pi[k] = t;
    }
}

/* snn_wipe -- erases secrets; the volatile write is not optimised away. */
void snn_wipe(void *buf, size_t n)
{
    volatile unsigned char *b = (volatile unsigned char *)buf;
    while (n--) *b++ = 0;
}

/* ==== 3. Pair streams, sharing, reveal, refresh (SPEC 1.1, 1.4) ========== */

/* K01: the stream P0 and P1 share (common randomness, zero-shares). */
snn_prg *snn_k01(snn_party *p) { return &p->pair[p->id == 0 ? 1 : 0]; }
/* K02: P0 and P2 (P0's triple shares). */
snn_prg *snn_k02(snn_party *p) { return &p->pair[p->id == 0 ? 2 : 0]; }
/* K12: P1 and P2 (P1's triple shares). */
snn_prg *snn_k12(snn_party *p) { return &p->pair[p->id == 1 ? 2 : 1]; }

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
    free(t);
    return rc;
}

/*
 * snn_refresh -- makes output shares fresh (SPEC 1.1): u from K01, P0 adds
 * u and P1 subtracts it, so the value is unchanged.  P2 does nothing.
 */
void snn_refresh(snn_party *p, uint64_t *x, size_t n)
{
    size_t i;
    if (p->id > 1) return;
    for (i = 0; i < n; i++) {
        uint64_t u = snn_prg_u64(snn_k01(p));
        x[i] += p->id == 0 ? u : (uint64_t)0 - u;
    }
}

/* ==== 4. Pi_MatMul and local truncation [SNN, Alg. 1, Alg. 11] =========== */

/* ==== 5. Pi_SelectShare [SNN, Alg. 2] ==================================== */

/* ==== 6. Pi_PrivateCompare [SNN, Alg. 3] ================================= */

/* ==== 7. Pi_ShareConvert [SNN, Alg. 4] =================================== */

/* ==== 8. Pi_ComputeMSB [SNN, Alg. 5] ===================================== */

/* ==== 9. Pi_DReLU, Pi_ReLU [SNN, Alg. 6, 7] ============================== */

/* ==== 10. Pi_Division [SNN, Alg. 8 (a)] ================================== */

/* ==== 11. Pi_Maxpool, Pi_DMaxpool [SNN, Alg. 9, 10] ====================== */
