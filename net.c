/*
 * net.c -- the three-party network of the SecureNN reference implementation:
 * a full mesh of P0, P1, P2 (and the data owner) over TCP or socketpairs,
 * framed messages, the one place every message passes, communication
 * counters and round stamps.  The transport sits below the protocols: it
 * calls nothing in securenn.c (the pairwise keys of SPEC 1.4 are set up
 * there, over these channels).
 *
 * Sections:
 *   1. ChaCha20, the block function below the PRG and the channel
 *   2. Names and the message inventory
 *   3. The party context and errors
 *   4. Time and descriptors
 *   5. The inboxes: bytes read ahead from each peer
 *   6. Aborts and stalls
 *   7. The channel's cryptography: Poly1305, ChaCha20-Poly1305
 *   8. WAN emulation
 *   9. The choke point: what sending and receiving share
 *  10. The choke point: sending (snn_send)
 *  11. The choke point: receiving (snn_recv)
 *  12. Connecting: addresses and sockets
 *  13. The channel handshake
 *  14. The policy without keys
 *  15. The mesh and the owner: connecting, listening, accepting
 *  16. Operating-system randomness and wiping
 *  17. Channel keys: files made by keygen, loaded by --keys
 *
 * ---------------------------------------------------------------------------
 * Frame (16-byte header, then count elements, all little-endian):
 *
 *   off size field
 *     0    2 magic "SN"
 *     2    1 version (1)
 *     3    1 sender id (0, 1, 2; 3 = owner)
 *     4    1 protocol id (enum snn_proto)
 *     5    1 step number of the protocol's specification (SPEC section 2)
 *     6    1 element kind (enum snn_kind): Z_L, Z_{L-1}: 8 bytes;
 *            Z_p, bit, byte: 1 byte
 *     7    1 reserved, 0 (a frame with another value is refused)
 *     8    4 round stamp: 1 + the highest stamp the sender had received
 *    12    4 element count
 *
 * The receiver names the frame it expects (sender, protocol, step, kind,
 * count) and gets an error naming both if another arrives; it then checks
 * every element's range (Z_{L-1} < 2^64-1, Z_p < 67, bits 0/1).
 *
 * Rounds: a frame's stamp is one more than the highest stamp its sender had
 * received (a Lamport clock), so the highest stamp of a protocol run is the
 * length of its longest chain of messages that wait on each other: its
 * round complexity, measured rather than assumed.
 *
 * ---------------------------------------------------------------------------
 * Channels.  The protocols assume private, authenticated channels [SNN §2];
 * with keys (--keys) this file provides them.  Each pair of endpoints holds
 * a 256-bit pre-shared key K (snn_keygen).  A connection opens with a
 * handshake:
 *
 *   Setup 0  initiator -> responder, clear: configuration word, keys?, n_init
 *   Setup 4  responder -> initiator, clear: keys?, n_resp
 *            (both refuse if they disagree about keys, naming the peer)
 *   then each derives k(i->j) = PRF(K, i, j, n_init, n_resp) for both
 *   directions (snn_channel_kdf) and every later frame is sealed:
 *   Setup 5  both ways, sealed: the configuration word again; the first
 *            authenticated frame, so a peer without K is refused at once.
 *
 * A sealed frame on the wire is
 *
 *   off  size
 *     0     4  L = 16 + payload bytes, little-endian: clear, authenticated
 *     4     L  the frame above (header and payload), encrypted
 *   4+L    16  Poly1305 tag
 *
 * sealed with AEAD_CHACHA20_POLY1305 [RFC8439 2.8] under k(sender ->
 * receiver), aad = the 4 length bytes, nonce = 0^32 | the direction's frame
 * counter as 64 bits little-endian (0 for Setup 5, then 1, 2, ...).  A frame
 * altered, replayed, reordered or dropped in transit therefore fails the
 * tag check of the next frame the receiver opens, which is an error naming
 * the peer and the frame it expected.  What stays visible: that frames
 * flow, their sizes and their timing.
 *
 * Without keys, frames travel in the clear as in the table above, and a
 * party refuses any peer that is not on loopback unless p->net.insecure
 * (--insecure).  Socketpair meshes (tests) have no handshake unless keyed.
 *
 * ---------------------------------------------------------------------------
 * Message inventory: every frame that may cross the wire (enforced: a frame
 * not listed here is neither sent nor accepted).  "Pj" is P0 or P1.
 *
 *   protocol       step kind     from -> to        contents
 *   Setup             0 bytes    P1,P2,own -> P*   hello: configuration word,
 *                                                  keys?, nonce (24 bytes, clear)
 *   Setup             4 bytes    P* -> P1,P2,own   reply: keys?, nonce (16, clear)
 *   Setup             5 Z_L      any -> any        first sealed frame (keys only)
 *   Setup             1 bytes    Pi -> Pj (i<j)    pairwise key K_ij, 32 bytes
 *   Setup             2 bytes    owner -> P*       job: public parameters
 *   Setup             3 bytes    P* -> P*          barrier before a measured call
 *   Setup             4 Z_L      P0 -> owner       flow control: the training step
 *                                                  whose batch the servers want
 *   Setup             6 bytes    P* -> any         abort: the sender stops, and
 *                                                  why (or: busy); see below
 *   Setup             7 bytes    any -> any        stalled: whom the sender's
 *                                                  wait ran out on, for what
 *   Share             2 Z_L      owner -> P0,P1    one additive share of input
 *   Reveal            1 Z_L      Pj -> Pk, owner   a share, to the output's owner
 *                                                  (never to P2)
 *   MatMul   Alg. 1   1 Z_L      P2 -> P1          Z_1 = (U_0+U_1)(V_0+V_1) - Z_0
 *   MatMul   Alg. 1   2 Z_L      Pj -> P(1-j)      E_j = X_j - U_j, F_j = Y_j - V_j
 *   PrivCmp  Alg. 3   3 Z_p      Pj -> P2          d_i = s_i c_i, permuted (64/elem)
 *   ShareCnv Alg. 4   1 Z_L      Pj -> P2          a~_j = a_j + r_j
 *   ShareCnv Alg. 4   2 Z_p      P2 -> Pj          shares of the 64 bits of x
 *   ShareCnv Alg. 4   2 Z_{L-1}  P2 -> Pj          shares of delta
 *   ShareCnv Alg. 4   4 Z_{L-1}  P2 -> Pj          shares of eta'
 *   CompMSB  Alg. 5   1 Z_{L-1}  P2 -> Pj          shares of x
 *   CompMSB  Alg. 5   1 Z_p      P2 -> Pj          shares of the 64 bits of x
 *   CompMSB  Alg. 5   1 Z_L      P2 -> Pj          shares of x[0]
 *   CompMSB  Alg. 5   2 Z_{L-1}  Pj -> P(1-j)      c_j = 2 a_j + x_j
 *   CompMSB  Alg. 5   4 Z_L      P2 -> Pj          shares of beta'
 *   DMaxpool Alg. 10  2 Z_L      Pj -> P2          P0: <ind>_0 + r, P1: <ind>_1
 *   DMaxpool Alg. 10  3 Z_L      P2 -> Pj          shares of the one-hot e_k
 *   Test              n any      any -> any        test-suite vectors; refused
 *                                                  unless p->net.test_frames (set
 *                                                  by the test runner only)
 *
 * SelectShare, DReLU, ReLU, Division and Maxpool send nothing of their own:
 * their frames are those of the protocols they call.
 * ---------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "securenn.h"

#define HDR_LEN      16
#define SEAL_PRE      4                     /* a sealed frame's length  */
#define SEAL_TAG     16                     /* ... and its Poly1305 tag */
#define HELLO_LEN    24                     /* Setup 0: config, keys?, nonce */
#define REPLY_LEN    16                     /* Setup 4: keys?, nonce    */
#define WIRE_VERSION 1
/* Bytes held from one peer: 4 GiB, or half the address space where size_t
 * is 32 bits (2^32 would not fit) */
#define INBOX_MAX    ((size_t)(SIZE_MAX / 2 < UINT32_MAX ? SIZE_MAX / 2 : (uint64_t)1 << 32))
/* A connection to a listening party must complete its opening (hello and
 * handshake) within OPENING_MS, or it is closed as a stray and the party
 * keeps listening; after STRAY_MAX strays in one wait the party stops. */
#define OPENING_MS   3000
#define STRAY_MAX    16
#define STRAY_WHY    512                    /* why a stray was refused  */
/* TCP keepalive (tune_socket): idle seconds, then probes every KEEP_INTVL
 * s, KEEP_COUNT of them unanswered: the peer is gone. */
#define KEEP_IDLE    20
#define KEEP_INTVL   5
#define KEEP_COUNT   4
/* The longest control frame's payload (Setup steps 6 and 7). */
#define ABORT_MAX    255
/* The hello's configuration word: all parties must agree on l, p and f. */
#define CONFIG_WORD  ((uint64_t)WIRE_VERSION << 32 | (uint64_t)SNN_ELL << 16 | \
                      (uint64_t)SNN_P << 8 | (uint64_t)SNN_F)

/* ==== 1. ChaCha20 [RFC8439 2.3]: below the PRG and the channel ========== */

/*
 * The ChaCha20 block function [RFC8439 2.3], the lowest layer: the PRG of
 * securenn.c and the channel below use this one definition.  State:
 * constants | key | counter | nonce; 20 rounds (10 column + diagonal double
 * rounds); plus the input.
 */
static uint32_t rotl32(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

/* The quarter round [RFC8439 2.1]. */
#define CHACHA_QR(a, b, c, d)                                       \
    do {                                                            \
        a += b; d ^= a; d = rotl32(d, 16);                          \
        c += d; b ^= c; b = rotl32(b, 12);                          \
        a += b; d ^= a; d = rotl32(d, 8);                           \
        c += d; b ^= c; b = rotl32(b, 7);                           \
    } while (0)

/* The initial state of block `counter` [RFC8439 2.3]. */
static void chacha20_init(uint32_t s[16], const uint32_t key[8], uint32_t counter, const uint32_t nonce[3])
{
    int i;
    s[0] = 0x61707865; s[1] = 0x3320646e; s[2] = 0x79622d32; s[3] = 0x6b206574;
    for (i = 0; i < 8; i++) s[4 + i] = key[i];
    s[12] = counter;
    s[13] = nonce[0]; s[14] = nonce[1]; s[15] = nonce[2];
}

/* out = ChaCha20(key, counter, nonce), one block; the working state (which
 * holds the key) is erased before returning. */
void snn_chacha20_block(uint32_t out[16], const uint32_t key[8], uint32_t counter, const uint32_t nonce[3])
{
    uint32_t s[16], x[16];
    volatile uint32_t *vs = s, *vx = x;
    int i;

    chacha20_init(s, key, counter, nonce);
    for (i = 0; i < 16; i++) x[i] = s[i];
    for (i = 0; i < 10; i++) {
        CHACHA_QR(x[0], x[4], x[8],  x[12]); CHACHA_QR(x[1], x[5], x[9],  x[13]);
        CHACHA_QR(x[2], x[6], x[10], x[14]); CHACHA_QR(x[3], x[7], x[11], x[15]);
        CHACHA_QR(x[0], x[5], x[10], x[15]); CHACHA_QR(x[1], x[6], x[11], x[12]);
        CHACHA_QR(x[2], x[7], x[8],  x[13]); CHACHA_QR(x[3], x[4], x[9],  x[14]);
    }
    for (i = 0; i < 16; i++) out[i] = x[i] + s[i];
    for (i = 0; i < 16; i++) vs[i] = vx[i] = 0;
}

/*
 * SNN_PRG_BLOCKS consecutive blocks, counter, counter + 1, ..., as little-
 * endian bytes: the same block function run on the blocks side by side
 * (lane b is block counter + b, row i of x holds word i of every lane), so
 * that the compiler keeps the lanes in vector registers.  A block number
 * that wraps past 2^32 - 1 carries into nonce word 1 (see snn_prg_init).
 * Byte for byte the keystream of snn_chacha20_block per block (test.c).
 */
void snn_chacha20_blocks(uint8_t out[SNN_PRG_BUF], const uint32_t key[8], uint32_t counter,
                         const uint32_t nonce[3])
{
    uint32_t s[16][SNN_PRG_BLOCKS], x[16][SNN_PRG_BLOCKS];
    size_t b, i;

    for (b = 0; b < SNN_PRG_BLOCKS; b++) {
        const uint32_t ctr = counter + (uint32_t)b;
        s[0][b] = 0x61707865; s[1][b] = 0x3320646e; s[2][b] = 0x79622d32; s[3][b] = 0x6b206574;
        for (i = 0; i < 8; i++) s[4 + i][b] = key[i];
        s[12][b] = ctr;
        s[13][b] = nonce[0];
        s[14][b] = nonce[1] + (uint32_t)(ctr < counter);   /* the carry */
        s[15][b] = nonce[2];
    }
    for (i = 0; i < 16; i++)
        for (b = 0; b < SNN_PRG_BLOCKS; b++) x[i][b] = s[i][b];
#define CHACHA_QRN(a, bb, c, d)                                                            \
    for (b = 0; b < SNN_PRG_BLOCKS; b++) CHACHA_QR(x[a][b], x[bb][b], x[c][b], x[d][b])
    for (i = 0; i < 10; i++) {
        CHACHA_QRN(0, 4, 8,  12); CHACHA_QRN(1, 5, 9,  13);
        CHACHA_QRN(2, 6, 10, 14); CHACHA_QRN(3, 7, 11, 15);
        CHACHA_QRN(0, 5, 10, 15); CHACHA_QRN(1, 6, 11, 12);
        CHACHA_QRN(2, 7, 8,  13); CHACHA_QRN(3, 4, 9,  14);
    }
#undef CHACHA_QRN
    for (i = 0; i < 16; i++)
        for (b = 0; b < SNN_PRG_BLOCKS; b++) x[i][b] += s[i][b];
    for (b = 0; b < SNN_PRG_BLOCKS; b++)
        for (i = 0; i < 16; i++) {
            uint8_t *o = out + 64 * b + 4 * i;
            const uint32_t w = x[i][b];
            o[0] = (uint8_t)w; o[1] = (uint8_t)(w >> 8); o[2] = (uint8_t)(w >> 16); o[3] = (uint8_t)(w >> 24);
        }
    /* The key words of the input block (rows 4-11).  The other rows are
     * public, and x now holds exactly the keystream written to out. */
    for (i = 4; i < 12; i++) {
        volatile uint32_t *in = s[i];
        for (b = 0; b < SNN_PRG_BLOCKS; b++) in[b] = 0;
    }
}

/* ==== 2. Names and the message inventory ================================ */

static const char proto_names[SNN_PROTO_COUNT][16] = {
    "Setup", "Share", "Reveal", "MatMul", "SelectShare", "PrivateCompare",
    "ShareConvert", "ComputeMSB", "DReLU", "ReLU", "Division", "Maxpool",
    "DMaxpool", "Test"
};

static const char kind_names[SNN_KIND_COUNT][8] = {
    "byte", "Z_L", "Z_{L-1}", "Z_p", "bit"
};

static const size_t kind_size[SNN_KIND_COUNT] = { 1, 8, 8, 1, 1 };

#define E0 1u   /* P0    */
#define E1 2u   /* P1    */
#define E2 4u   /* P2    */
#define EC 8u   /* owner */
#define ANYKIND (-1)
#define ANYSTEP (-1)

typedef struct {
    int proto, step, kind;
    unsigned from, to;       /* endpoint masks */
    char what[56];           /* arrays, not pointers: the table stays in .rodata */
} msg_type;

/* The inventory of the file comment, as data. */
static const msg_type inventory[] = {
    { SNN_PROTO_SETUP,    0, SNN_KIND_BYTES, E1|E2|EC, E0|E1|E2, "hello: configuration word, keys?, nonce" },
    { SNN_PROTO_SETUP,    4, SNN_KIND_BYTES, E0|E1|E2, E1|E2|EC, "handshake reply: keys?, nonce" },
    { SNN_PROTO_SETUP,    5, SNN_KIND_ZL,    E0|E1|E2|EC, E0|E1|E2|EC, "first sealed frame: configuration word" },
    { SNN_PROTO_SETUP,    1, SNN_KIND_BYTES, E0|E1,    E1|E2,    "pairwise key K_ij, drawn by the lower id" },
    { SNN_PROTO_SETUP,    2, SNN_KIND_BYTES, EC,       E0|E1|E2, "job description (public parameters)" },
    { SNN_PROTO_SETUP,    3, SNN_KIND_BYTES, E0|E1|E2, E0|E1|E2, "barrier: one byte, before a measured call" },
    { SNN_PROTO_SETUP,    4, SNN_KIND_ZL,    E0,       EC,       "flow control: the step whose batch P0 asks for" },
    { SNN_PROTO_SETUP,    6, SNN_KIND_BYTES, E0|E1|E2, E0|E1|E2|EC, "abort: whom the error is about, and the error" },
    { SNN_PROTO_SETUP,    7, SNN_KIND_BYTES, E0|E1|E2|EC, E0|E1|E2|EC, "stalled: whom the sender waits for, for what" },
    { SNN_PROTO_SHARE,    2, SNN_KIND_ZL,    E0|E1|E2|EC, E0|E1, "one additive share of the owner's input" },
    { SNN_PROTO_REVEAL,   1, SNN_KIND_ZL,    E0|E1,    E0|E1|EC, "a share, sent to the party that gets the output" },
    { SNN_PROTO_MATMUL,   1, SNN_KIND_ZL,    E2,       E1,       "Z_1 = (U_0+U_1)(V_0+V_1) - Z_0, P1's triple share" },
    { SNN_PROTO_MATMUL,   2, SNN_KIND_ZL,    E0|E1,    E0|E1,    "E_j = X_j - U_j and F_j = Y_j - V_j" },
    { SNN_PROTO_PC,       3, SNN_KIND_ZP,    E0|E1,    E2,       "d_i = s_i c_i mod p, permuted by pi" },
    { SNN_PROTO_SC,       1, SNN_KIND_ZL,    E0|E1,    E2,       "a~_j = a_j + r_j" },
    { SNN_PROTO_SC,       2, SNN_KIND_ZP,    E2,       E0|E1,    "shares of the bits of x over Z_p" },
    { SNN_PROTO_SC,       2, SNN_KIND_ZLM1,  E2,       E0|E1,    "shares of delta = wrap(a~_0, a~_1) over Z_{L-1}" },
    { SNN_PROTO_SC,       4, SNN_KIND_ZLM1,  E2,       E0|E1,    "shares of eta' over Z_{L-1}" },
    { SNN_PROTO_MSB,      1, SNN_KIND_ZLM1,  E2,       E0|E1,    "shares of x over Z_{L-1}" },
    { SNN_PROTO_MSB,      1, SNN_KIND_ZP,    E2,       E0|E1,    "shares of the bits of x over Z_p" },
    { SNN_PROTO_MSB,      1, SNN_KIND_ZL,    E2,       E0|E1,    "shares of x[0] over Z_L" },
    { SNN_PROTO_MSB,      2, SNN_KIND_ZLM1,  E0|E1,    E0|E1,    "c_j = 2 a_j + x_j over Z_{L-1}" },
    { SNN_PROTO_MSB,      4, SNN_KIND_ZL,    E2,       E0|E1,    "shares of beta' over Z_L" },
    { SNN_PROTO_DMAXPOOL, 2, SNN_KIND_ZL,    E0|E1,    E2,       "P0: <ind>_0 + r; P1: <ind>_1" },
    { SNN_PROTO_DMAXPOOL, 3, SNN_KIND_ZL,    E2,       E0|E1,    "shares of the one-hot vector e_k" },
    { SNN_PROTO_TEST, ANYSTEP, ANYKIND,      E0|E1|E2|EC, E0|E1|E2|EC, "test-suite vector" },
};

const char *snn_proto_name(int proto)
{
    return proto >= 0 && proto < SNN_PROTO_COUNT ? proto_names[proto] : "unknown protocol";
}

const char *snn_kind_name(int kind)
{
    return kind >= 0 && kind < SNN_KIND_COUNT ? kind_names[kind] : "unknown kind";
}

static const msg_type *find_type(int proto, int step, int kind)
{
    size_t i;
    for (i = 0; i < sizeof inventory / sizeof inventory[0]; i++) {
        const msg_type *t = &inventory[i];
        if (t->proto == proto && (t->step == ANYSTEP || t->step == step)
            && (t->kind == ANYKIND || t->kind == kind))
            return t;
    }
    return NULL;
}

const char *snn_step_name(int proto, int step, int kind)
{
    const msg_type *t = find_type(proto, step, kind);
    return t ? t->what : NULL;
}

const char *snn_endpoint_name(int id)
{
    static const char names[SNN_NEND][6] = { "P0", "P1", "P2", "owner" };
    return id >= 0 && id < SNN_NEND ? names[id] : "P?";
}

static const char *who(int id) { return snn_endpoint_name(id); }

/* Records that the error rc just set is about peer k (the first such wins,
 * as the error does); returns rc.  An abort frame carries k. */
static int blame(snn_party *p, int k, int rc)
{
    if (p->err_from < 0) p->err_from = k;
    return rc;
}

/* ==== 3. The party context and errors ================================== */

void snn_party_init(snn_party *p, int id, int timeout_ms)
{
    int k;
    memset(p, 0, sizeof *p);
    p->id = id;
    p->net.timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    p->net.listen_fd = -1;
    p->err_from = -1;
    for (k = 0; k < SNN_NEND; k++) p->net.fd[k] = -1;
}

/* Whether WAN emulation is on (section 8). */
static int wan_on(const snn_party *p) { return p->net.wan.latency_us > 0 || p->net.wan.bytes_per_s > 0; }

static void send_abort(snn_party *p);

void snn_party_close(snn_party *p)
{
    int k;
    send_abort(p);
    for (k = 0; k < SNN_NEND; k++) {
        if (p->net.fd[k] >= 0) close(p->net.fd[k]);
        p->net.fd[k] = -1;
        if (p->net.in[k].buf) snn_wipe(p->net.in[k].buf, p->net.in[k].cap);   /* received keys */
        free(p->net.in[k].buf);
        p->net.in[k].buf = NULL;
        p->net.in[k].len = p->net.in[k].cap = 0;
    }
    if (p->net.listen_fd >= 0) close(p->net.listen_fd);
    p->net.listen_fd = -1;
    snn_wipe(p->pair, sizeof p->pair);
    snn_wipe(p->net.chan, sizeof p->net.chan);
    p->net.keyed = 0;
    snn_wipe(&p->own, sizeof p->own);
    memset(p->have_pair, 0, sizeof p->have_pair);
    for (k = 0; k < SNN_SPARE; k++) {     /* wiped when they were put back */
        free(p->spare.block[k]);
        p->spare.block[k] = NULL;
        p->spare.size[k] = 0;
    }
}

int snn_fail(snn_party *p, enum snn_err e, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (p->err) return -1;             /* sticky: the first error wins */
    p->err = e;
    n = snprintf(p->errmsg, sizeof p->errmsg, "%s: ", who(p->id));
    if (n < 0 || (size_t)n >= sizeof p->errmsg) return -1;
    va_start(ap, fmt);
    vsnprintf(p->errmsg + n, sizeof p->errmsg - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

void snn_stats_reset(snn_party *p)
{
    memset(&p->net.stats, 0, sizeof p->net.stats);
    p->net.round = 0;
}

/* ==== 4. Time and descriptors ========================================== */

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Monotonic microseconds (WAN emulation). */
static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec t;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void tune_socket(int fd)
{
    int one = 1;
    /* Many small frames: send each at once (no Nagle delay).  Fails
     * harmlessly on a socketpair. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Keepalive: a peer whose machine died (no FIN, no RST) is noticed by
     * an idle wait, e.g. a server's wait for its owner, within about
     * KEEP_IDLE + KEEP_COUNT * KEEP_INTVL s where the system lets us set
     * them (Linux, the BSDs); elsewhere after the system's default. */
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#if defined(TCP_KEEPIDLE) && defined(TCP_KEEPINTVL) && defined(TCP_KEEPCNT)
    {
        int idle = KEEP_IDLE, intvl = KEEP_INTVL, cnt = KEEP_COUNT;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
#endif
}

/* ==== 5. The inboxes: bytes read ahead from each peer =================== */

/*
 * Every wait drains all peers into their inboxes, so no pattern of large
 * sends can deadlock: a party blocked on sending to A keeps reading B.
 */
static int inbox_reserve(snn_party *p, int k, size_t extra)
{
    snn_inbox *b = &p->net.in[k];
    size_t cap = b->cap ? b->cap : 65536;
    unsigned char *nb;
    if (extra <= b->cap - b->len) return 0;
    if (extra > INBOX_MAX - b->len)
        return blame(p, k, snn_fail(p, SNN_ERR_PROTO, "%s sent more than %zu unread bytes", who(k), INBOX_MAX));
    while (cap < b->len + extra) cap *= 2;
    /* not realloc: the old buffer is wiped before it is freed */
    if (!(nb = malloc(cap))) return snn_fail(p, SNN_ERR_NOMEM, "out of memory buffering frames from %s", who(k));
    if (b->buf) {
        memcpy(nb, b->buf, b->len);
        snn_wipe(b->buf, b->cap);
        free(b->buf);
    }
    b->buf = nb;
    b->cap = cap;
    return 0;
}

/*
 * WAN emulation: the inbox remembers when its bytes were read, as runs
 * (end offset, time).  Bytes read within a millisecond of the last run join
 * it; when the table is full the newest run takes the new bytes and the
 * later time, so a frame is never deemed to have arrived earlier than it did.
 */
static void arrival_note(snn_inbox *b, int64_t t)
{
    if (b->narr > 0 && (t - b->arr_us[b->narr - 1] < 1000 || b->narr == SNN_ARRIVALS)) {
        b->arr_end[b->narr - 1] = b->len;
        if (b->narr == SNN_ARRIVALS) b->arr_us[b->narr - 1] = t;
        return;
    }
    b->arr_end[b->narr] = b->len;
    b->arr_us[b->narr] = t;
    b->narr++;
}

/* The first n bytes of the inbox were consumed: shift the runs. */
static void arrival_consume(snn_inbox *b, size_t n)
{
    size_t i, keep = 0;
    for (i = 0; i < b->narr; i++) {
        if (b->arr_end[i] <= n) continue;
        b->arr_end[keep] = b->arr_end[i] - n;
        b->arr_us[keep] = b->arr_us[i];
        keep++;
    }
    b->narr = keep;
}

/* Reads what fd k has now.  Returns bytes read, 0 if none, -2 on EOF. */
static long inbox_fill(snn_party *p, int k)
{
    snn_inbox *b = &p->net.in[k];
    ssize_t r;
    if (inbox_reserve(p, k, 65536) != 0) return -1;
    r = recv(p->net.fd[k], b->buf + b->len, b->cap - b->len, 0);
    if (r > 0) {
        b->len += (size_t)r;
        if (wan_on(p)) arrival_note(b, now_us());
        return (long)r;
    }
    if (r == 0) return -2;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    if (errno == ECONNRESET || errno == EPIPE) return -2;     /* the peer is gone */
    return snn_fail(p, SNN_ERR_IO, "reading from %s: %s", who(k), strerror(errno));
}

static int find_abort(snn_party *p, int k);
static void refuse_busy(snn_party *p);
static void drain_now(snn_party *p);
static int stalled(snn_party *p, int k, const char *ctx);

/*
 * pump -- waits until `want` bytes from peer k are held (k < 0: no peer),
 * or, with out_fd >= 0, until out_fd is writable, or, with until_us > 0,
 * until that time (WAN emulation); meanwhile reads every peer.  `ctx`
 * names the frame for error messages.  A wait with no progress for
 * p->net.timeout_ms fails (stalled: first the peers hear of it, and a chain
 * of stalls is named); so does one whose peer closed, with the reason a
 * peer's abort gives if any.  A server that is serving its owner answers
 * any other owner that connects that it is busy.
 */
static int pump(snn_party *p, int k, size_t want, int out_fd, int64_t until_us, const char *ctx)
{
    int64_t deadline = now_ms() + p->net.timeout_ms;
    int eof[SNN_NEND] = { 0 };
    /* a server with its mesh and its owner: any new connection is another owner */
    int busy = p->id < SNN_NPARTY && p->net.listen_fd >= 0 && p->net.fd[SNN_CLIENT] >= 0
               && p->net.fd[(p->id + 1) % SNN_NPARTY] >= 0 && p->net.fd[(p->id + 2) % SNN_NPARTY] >= 0;

    for (;;) {
        struct pollfd pf[SNN_NEND + 2];
        int ids[SNN_NEND + 2], np = 0, i, rc;
        int64_t left;

        if (k >= 0 && p->net.in[k].len >= want) return 0;
        if (until_us > 0) {
            const int64_t wait_us = until_us - now_us();
            if (wait_us <= 0) return 0;
            deadline = now_ms() + p->net.timeout_ms;   /* waiting on the clock is progress */
            if (wait_us / 1000 + 1 < p->net.timeout_ms) deadline = now_ms() + wait_us / 1000 + 1;
        }
        if (k >= 0 && eof[k]) {
            if (find_abort(p, k) != 0) return -1;
            return blame(p, k, snn_fail(p, SNN_ERR_PEER_CLOSED, "%s closed the connection (waiting for %s)",
                                        who(k), ctx));
        }
        for (i = 0; i < SNN_NEND; i++) {
            if (p->net.fd[i] < 0 || eof[i]) continue;
            pf[np].fd = p->net.fd[i]; pf[np].events = POLLIN; pf[np].revents = 0;
            ids[np++] = i;
        }
        if (out_fd >= 0) {
            pf[np].fd = out_fd; pf[np].events = POLLOUT; pf[np].revents = 0;
            ids[np++] = -1;
        }
        if (busy) {
            pf[np].fd = p->net.listen_fd; pf[np].events = POLLIN; pf[np].revents = 0;
            ids[np++] = -2;
        }
        left = deadline - now_ms();
        if (left <= 0 && until_us > 0) continue;   /* the emulated delay is up */
        if (left <= 0) {
            if (k >= 0) return stalled(p, k, ctx);
            drain_now(p);
            if (find_abort(p, -1) != 0) return -1;
            return snn_fail(p, SNN_ERR_TIMEOUT, "no progress for %d s (waiting for %s)",
                            p->net.timeout_ms / 1000, ctx);
        }
        rc = poll(pf, (nfds_t)np, (int)(left > 1000000 ? 1000000 : left));
        if (rc < 0) {
            if (errno == EINTR) continue;
            return snn_fail(p, SNN_ERR_IO, "poll: %s", strerror(errno));
        }
        for (i = 0; i < np; i++) {
            if (ids[i] == -2) {
                if (pf[i].revents & POLLIN) refuse_busy(p);
                continue;
            }
            if (ids[i] < 0) {
                if (pf[i].revents & (POLLOUT | POLLERR | POLLHUP)) return 0;
                continue;
            }
            if (pf[i].revents & (POLLIN | POLLERR | POLLHUP)) {
                long got = inbox_fill(p, ids[i]);
                if (got == -1) return -1;
                if (got == -2) eof[ids[i]] = 1;
                if (got > 0 && ids[i] == k) deadline = now_ms() + p->net.timeout_ms;
            }
        }
    }
}

/* Writes all of buf to peer k, draining every peer while it waits. */
static int write_all(snn_party *p, int k, const unsigned char *buf, size_t n, const char *ctx)
{
    while (n > 0) {
        ssize_t w = send(p->net.fd[k], buf, n, MSG_NOSIGNAL);
        if (w > 0) { buf += w; n -= (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (pump(p, -1, 0, p->net.fd[k], 0, ctx) != 0) return -1;
            continue;
        }
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            drain_now(p);
            if (find_abort(p, k) != 0) return -1;   /* it said why */
            return blame(p, k, snn_fail(p, SNN_ERR_PEER_CLOSED, "%s closed the connection (sending %s)", who(k), ctx));
        }
        return snn_fail(p, SNN_ERR_IO, "writing to %s: %s", who(k), w < 0 ? strerror(errno) : "no progress");
    }
    return 0;
}

/* ==== 6. Aborts and stalls: a party that stops tells its peers why ====== */

/*
 * Two control frames, outside the protocols and never counted, sealed like
 * every frame on a sealed channel: Setup step 6, "abort" (the sender stops;
 * byte 0 is the party its error is about, or 255, the rest its one-line
 * reason), and Setup step 7, "stalled" (the sender's wait ran out; byte 0
 * is the party it waits for, the rest names the frame).  A party that fails
 * on a bad frame names its sender, but an honest party that saw nothing
 * wrong would only name whom it waited for; with these, every honest party
 * names the party that deviated:
 *   - a server that fails sends an abort to every peer before it closes
 *     (snn_party_close), unless its failure is itself a peer's abort;
 *   - a party whose wait runs out sends "stalled" to every peer, keeps
 *     reading for a grace of a quarter of its timeout (at most 2 s), and
 *     then follows the chain of stalls from the party it waited for:
 *     "waiting for X from P2, which waits for Y from P1";
 *   - a party that finds an abort where it expected a frame fails with the
 *     sender's reason; a stall notice there is skipped (its abort follows),
 *     unless it says its sender waits for this party, which waits for it.
 * The texts are error messages: public sizes, steps and received values.
 */
#define CTL_ABORT   6
#define CTL_STALLED 7

static void frame_nonce(uint8_t nonce[12], uint64_t number);

/* Writes one control frame to fd (sealed under ch if ch is sealed),
 * without waiting: best effort.  pre (npre bytes), then msg. */
static void write_ctl(int fd, snn_channel *ch, int from, int step, const unsigned char *pre, size_t npre,
                      const char *msg)
{
    unsigned char f[SEAL_PRE + HDR_LEN + ABORT_MAX + SEAL_TAG], *h = f + SEAL_PRE;
    size_t n = strlen(msg), len;
    if (n > ABORT_MAX - npre) n = ABORT_MAX - npre;
    h[0] = 'S'; h[1] = 'N'; h[2] = WIRE_VERSION; h[3] = (unsigned char)from;
    h[4] = SNN_PROTO_SETUP; h[5] = (unsigned char)step; h[6] = SNN_KIND_BYTES; h[7] = 0;
    snn_store32_le(h + 8, 0);
    snn_store32_le(h + 12, (uint32_t)(npre + n));
    if (npre) memcpy(h + HDR_LEN, pre, npre);
    memcpy(h + HDR_LEN + npre, msg, n);
    len = HDR_LEN + npre + n;
    if (ch && ch->sealed) {
        uint8_t nonce[12];
        snn_store32_le(f, (uint32_t)len);
        frame_nonce(nonce, ch->tx_count++);
        snn_aead_seal(h, h + len, ch->tx_key, nonce, f, SEAL_PRE, h, len);
        (void)send(fd, f, SEAL_PRE + len + SEAL_TAG, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
        (void)send(fd, h, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
}

/* A server that failed tells every peer why ("stopped: <its error>"). */
static void send_abort(snn_party *p)
{
    char msg[16 + sizeof p->errmsg];
    const char *why = p->errmsg;
    unsigned char about = p->err_from >= 0 && p->err_from < SNN_NEND ? (unsigned char)p->err_from : 255;
    int k;
    if (!p->err || p->err == SNN_ERR_ABORTED || p->id < 0 || p->id >= SNN_NPARTY) return;
    if (strncmp(why, who(p->id), 2) == 0 && why[2] == ':' && why[3] == ' ') why += 4;
    snprintf(msg, sizeof msg, "stopped: %s", why);
    for (k = 0; k < SNN_NEND; k++)
        if (k != p->id && p->net.fd[k] >= 0) write_ctl(p->net.fd[k], &p->net.chan[k], p->id, CTL_ABORT, &about, 1, msg);
}

/* The printable text of n payload bytes at b. */
static void ctl_text(char *out, const unsigned char *b, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) out[i] = b[i] >= 0x20 && b[i] < 0x7f ? (char)b[i] : '?';
    out[n] = '\0';
}

/* Fails with peer k's abort (its payload, n bytes at b):
 * "P1: P2 stopped: expected ...". */
static int peer_aborted(snn_party *p, int k, const unsigned char *b, size_t n)
{
    char msg[ABORT_MAX + 1];
    if (n == 0) return blame(p, k, snn_fail(p, SNN_ERR_ABORTED, "%s stopped", who(k)));
    ctl_text(msg, b + 1, n - 1);
    return blame(p, b[0] < SNN_NEND ? b[0] : k, snn_fail(p, SNN_ERR_ABORTED, "%s %s", who(k), msg));
}

/* What the unread frames of every peer hold (opened ahead, not consumed,
 * on a sealed channel): each peer's stall notice (waits[k], whom it waits
 * for, or -1; what[k], the frame) and its abort (abort[k]: its payload,
 * alen[k] bytes, or -1). */
typedef struct {
    int           waits[SNN_NEND];
    char          what[SNN_NEND][ABORT_MAX + 1];
    int           alen[SNN_NEND];
    unsigned char abort[SNN_NEND][ABORT_MAX];
} ctl_scan;

static void scan_ctl(const snn_party *p, ctl_scan *s)
{
    int k;
    for (k = 0; k < SNN_NEND; k++) {
        const snn_inbox *b = &p->net.in[k];
        const snn_channel *ch = &p->net.chan[k];
        uint64_t number = ch->rx_count;
        size_t off = 0;
        s->waits[k] = s->alen[k] = -1;
        s->what[k][0] = '\0';
        while (b->buf) {
            const unsigned char *h;
            unsigned char *open = NULL;
            uint64_t count, body;
            size_t step;
            if (ch->sealed) {
                uint8_t nonce[12];
                size_t len;
                if (b->len - off < SEAL_PRE) break;
                len = snn_load32_le(b->buf + off);
                if (len < HDR_LEN || len > b->len - off - SEAL_PRE || b->len - off - SEAL_PRE - len < SEAL_TAG) break;
                if (!(open = malloc(len))) break;
                frame_nonce(nonce, number);
                if (snn_aead_open(open, ch->rx_key, nonce, b->buf + off, SEAL_PRE, b->buf + off + SEAL_PRE, len,
                                  b->buf + off + SEAL_PRE + len) != 0) {
                    free(open);
                    break;                               /* snn_recv reports it */
                }
                h = open;
                body = len - HDR_LEN;
                step = SEAL_PRE + len + SEAL_TAG;
                number++;
            } else {
                if (b->len - off < HDR_LEN) break;
                h = b->buf + off;
                if (h[6] >= SNN_KIND_COUNT) break;
                body = (uint64_t)snn_load32_le(h + 12) * kind_size[h[6]];
                if (body > b->len - off - HDR_LEN) break;  /* incomplete */
                step = HDR_LEN + (size_t)body;
            }
            count = snn_load32_le(h + 12);
            if (h[0] != 'S' || h[1] != 'N' || h[2] != WIRE_VERSION || h[3] != k) {
                if (open) { snn_wipe(open, (size_t)body + HDR_LEN); free(open); }
                break;                                   /* not a frame: snn_recv reports it */
            }
            if (h[4] == SNN_PROTO_SETUP && h[6] == SNN_KIND_BYTES && count <= ABORT_MAX && count == body) {
                if (h[5] == CTL_STALLED && count >= 1 && h[HDR_LEN] < SNN_NEND) {
                    s->waits[k] = h[HDR_LEN];
                    ctl_text(s->what[k], h + HDR_LEN + 1, (size_t)count - 1);
                }
                if (h[5] == CTL_ABORT && s->alen[k] < 0) {
                    s->alen[k] = (int)count;
                    memcpy(s->abort[k], h + HDR_LEN, (size_t)count);
                }
            }
            if (open) { snn_wipe(open, (size_t)body + HDR_LEN); free(open); }
            off += step;
        }
    }
}

/* Peer k closed (k < 0: a wait on no peer ran out).  Fails with k's own
 * abort; failing that, with the abort of a third party that did not stall
 * and whose error is not about k (why k stopped); returns 0 if neither. */
static int find_abort(snn_party *p, int k)
{
    ctl_scan s;
    int j;
    scan_ctl(p, &s);
    if (k >= 0 && s.alen[k] >= 0) return peer_aborted(p, k, s.abort[k], (size_t)s.alen[k]);
    for (j = 0; j < SNN_NEND; j++)
        if (j != k && s.alen[j] >= 0 && s.waits[j] < 0 && (k < 0 || s.alen[j] == 0 || s.abort[j][0] != k))
            return peer_aborted(p, j, s.abort[j], (size_t)s.alen[j]);
    return 0;
}

/* Reads, without waiting, whatever every peer has sent. */
static void drain_now(snn_party *p)
{
    int k;
    for (k = 0; k < SNN_NEND; k++) {
        struct pollfd pf;
        if (p->net.fd[k] < 0) continue;
        pf.fd = p->net.fd[k]; pf.events = POLLIN; pf.revents = 0;
        while (poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN) && inbox_fill(p, k) > 0) {}
    }
}

/*
 * stalled -- the wait for `ctx` from peer k ran out.  Tells every peer,
 * reads for the grace, and fails: with the abort of a peer that did not
 * stall (its own error, the cause), or with the timeout and the chain of
 * stalls from k.  Returns -1.
 */
static int stalled(snn_party *p, int k, const char *ctx)
{
    int grace = p->net.timeout_ms / 4 < 2000 ? p->net.timeout_ms / 4 : 2000;
    int64_t end = now_ms() + grace;
    int eof[SNN_NEND] = { 0 }, seen[SNN_NEND] = { 0 }, j, i;
    unsigned char wk = (unsigned char)k;
    char chain[3 * (ABORT_MAX + 24)] = "";
    ctl_scan s;

    for (j = 0; j < SNN_NEND; j++)
        if (j != p->id && p->net.fd[j] >= 0) write_ctl(p->net.fd[j], &p->net.chan[j], p->id, CTL_STALLED, &wk, 1, ctx);
    drain_now(p);
    for (;;) {
        struct pollfd pf[SNN_NEND];
        int ids[SNN_NEND], np = 0;
        int64_t left = end - now_ms();
        scan_ctl(p, &s);
        for (j = 0; j < SNN_NEND; j++)
            if (s.alen[j] >= 0 && s.waits[j] < 0) return peer_aborted(p, j, s.abort[j], (size_t)s.alen[j]);
        for (i = 0; i < SNN_NEND; i++) {
            if (p->net.fd[i] < 0 || eof[i]) continue;
            pf[np].fd = p->net.fd[i]; pf[np].events = POLLIN; pf[np].revents = 0;
            ids[np++] = i;
        }
        if (left <= 0 || np == 0) break;
        if (poll(pf, (nfds_t)np, (int)left) < 0 && errno != EINTR) break;
        for (i = 0; i < np; i++) {
            long got;
            if (!(pf[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
            got = inbox_fill(p, ids[i]);
            if (got == -1) return -1;
            if (got == -2) eof[ids[i]] = 1;
        }
    }
    /* the chain: k waits for s.waits[k], which waits for ...; the error is
     * about its end (about k if it loops) */
    seen[p->id] = 1;
    for (j = k; j >= 0 && j < SNN_NEND && !seen[j] && s.waits[j] >= 0; j = s.waits[j]) {
        size_t n = strlen(chain);
        seen[j] = 1;
        snprintf(chain + n, sizeof chain - n, ", which waits for %s", s.what[j]);
    }
    (void)blame(p, j >= 0 && j < SNN_NEND && !seen[j] ? j : k, 0);
    return snn_fail(p, SNN_ERR_TIMEOUT, "no progress for %d s (waiting for %s%s)",
                    p->net.timeout_ms / 1000, ctx, chain);
}

#define BUSY_TEXT "is busy: it serves another owner's job (try again when that job ends)"

/* A server busy with its owner's job accepts another owner's connection
 * only to tell it so: it reads the hello (up to 200 ms), answers with an
 * abort frame in the clear and closes. */
static void refuse_busy(snn_party *p)
{
    const unsigned char none = 255;
    unsigned char hello[64];
    struct pollfd pf;
    int fd = accept(p->net.listen_fd, NULL, NULL);
    if (fd < 0) return;
    pf.fd = fd; pf.events = POLLIN; pf.revents = 0;
    if (poll(&pf, 1, 200) == 1) (void)recv(fd, hello, sizeof hello, MSG_DONTWAIT);
    write_ctl(fd, NULL, p->id, CTL_ABORT, &none, 1, BUSY_TEXT);
    close(fd);
}

/* ==== 7. The channel's cryptography: Poly1305, ChaCha20-Poly1305 [RFC8439] */

/*
 * Everything a protected channel needs, written out here beside the frames
 * it protects: Poly1305 [RFC8439 2.5], the AEAD of [RFC8439 2.8], and the
 * PRF that turns a pre-shared pair key and two fresh nonces into session
 * keys.  The ChaCha20 block function is the one of securenn.h (the PRG's).
 */



/*
 * Poly1305 [RFC8439 2.5]: the accumulator h and the clamped r are numbers
 * below 2^130, held as five 26-bit limbs (h = h0 + h1 2^26 + ... + h4 2^104)
 * so that every product of two limbs fits in 64 bits.  Each 16-byte block,
 * read little-endian with a 1 appended above its top byte, is added to h,
 * and h is multiplied by r modulo P = 2^130 - 5; since 2^130 = 5 (mod P),
 * a limb product that lands at 2^130 or above folds back multiplied by 5.
 * The tag is (h mod P) + s, modulo 2^128.  Constant time: no branch or
 * index depends on the key or the message.
 */
typedef struct {
    uint32_t r[5], h[5];
    uint32_t s[4];            /* the second key half, added at the end   */
    uint8_t  buf[16];         /* a partial block                        */
    size_t   used;
} poly1305;

#define LIMB 0x3ffffffu       /* 2^26 - 1 */

static void poly1305_init(poly1305 *st, const uint8_t key[32])
{
    /* r = le(key[0..15]) with the clamp of RFC 8439 2.5:
     * r &= 0x0ffffffc0ffffffc0ffffffc0fffffff */
    const uint32_t w0 = snn_load32_le(key) & 0x0fffffffu, w1 = snn_load32_le(key + 4) & 0x0ffffffcu;
    const uint32_t w2 = snn_load32_le(key + 8) & 0x0ffffffcu, w3 = snn_load32_le(key + 12) & 0x0ffffffcu;
    int i;
    st->r[0] = w0 & LIMB;
    st->r[1] = (w0 >> 26 | w1 << 6) & LIMB;
    st->r[2] = (w1 >> 20 | w2 << 12) & LIMB;
    st->r[3] = (w2 >> 14 | w3 << 18) & LIMB;
    st->r[4] = w3 >> 8;
    for (i = 0; i < 5; i++) st->h[i] = 0;
    for (i = 0; i < 4; i++) st->s[i] = snn_load32_le(key + 16 + 4 * i);
    st->used = 0;
}

/* h = (h + block + hibit 2^128) * r mod P, for each of the nb 16-byte
 * blocks at m in turn (h kept in registers from one block to the next). */
static void poly1305_blocks(poly1305 *st, const uint8_t *m, size_t nb, uint32_t hibit)
{
    const uint64_t r0 = st->r[0], r1 = st->r[1], r2 = st->r[2], r3 = st->r[3], r4 = st->r[4];
    const uint64_t s1 = r1 * 5, s2 = r2 * 5, s3 = r3 * 5, s4 = r4 * 5;   /* r_i 2^130 = 5 r_i */
    uint64_t h0 = st->h[0], h1 = st->h[1], h2 = st->h[2], h3 = st->h[3], h4 = st->h[4];
    uint64_t d0, d1, d2, d3, d4, c;

    for (; nb > 0; nb--, m += 16) {
        const uint32_t w0 = snn_load32_le(m), w1 = snn_load32_le(m + 4);
        const uint32_t w2 = snn_load32_le(m + 8), w3 = snn_load32_le(m + 12);
        h0 += w0 & LIMB;
        h1 += (w0 >> 26 | w1 << 6) & LIMB;
        h2 += (w1 >> 20 | w2 << 12) & LIMB;
        h3 += (w2 >> 14 | w3 << 18) & LIMB;
        h4 += w3 >> 8 | hibit << 24;
        /* the schoolbook product, limbs at 2^130 and above folded by 5 */
        d0 = h0 * r0 + h1 * s4 + h2 * s3 + h3 * s2 + h4 * s1;
        d1 = h0 * r1 + h1 * r0 + h2 * s4 + h3 * s3 + h4 * s2;
        d2 = h0 * r2 + h1 * r1 + h2 * r0 + h3 * s4 + h4 * s3;
        d3 = h0 * r3 + h1 * r2 + h2 * r1 + h3 * r0 + h4 * s4;
        d4 = h0 * r4 + h1 * r3 + h2 * r2 + h3 * r1 + h4 * r0;
        /* carries back to 26-bit limbs (h stays below 2^131: partly reduced) */
        c = d0 >> 26; h0 = d0 & LIMB; d1 += c;
        c = d1 >> 26; h1 = d1 & LIMB; d2 += c;
        c = d2 >> 26; h2 = d2 & LIMB; d3 += c;
        c = d3 >> 26; h3 = d3 & LIMB; d4 += c;
        c = d4 >> 26; h4 = d4 & LIMB; h0 += c * 5;
        c = h0 >> 26; h0 &= LIMB; h1 += c;
    }
    st->h[0] = (uint32_t)h0; st->h[1] = (uint32_t)h1; st->h[2] = (uint32_t)h2;
    st->h[3] = (uint32_t)h3; st->h[4] = (uint32_t)h4;
}

static void poly1305_update(poly1305 *st, const uint8_t *m, size_t n)
{
    if (st->used) {
        while (n > 0 && st->used < 16) { st->buf[st->used++] = *m++; n--; }
        if (st->used < 16) return;
        poly1305_blocks(st, st->buf, 1, 1);
        st->used = 0;
    }
    poly1305_blocks(st, m, n / 16, 1);
    m += n / 16 * 16;
    n %= 16;
    while (n > 0) { st->buf[st->used++] = *m++; n--; }
}

/* Zero bytes up to the next multiple of 16 (the AEAD's pad16). */
static void poly1305_pad16(poly1305 *st)
{
    static const uint8_t zero[16] = { 0 };
    if (st->used) poly1305_update(st, zero, 16 - st->used);
}

static void poly1305_finish(poly1305 *st, uint8_t tag[16])
{
    uint32_t h0, h1, h2, h3, h4, g0, g1, g2, g3, g4, c, mask;
    uint64_t f;
    if (st->used) {
        /* the last partial block: a 1 byte after the message, then zeros */
        size_t i;
        st->buf[st->used] = 1;
        for (i = st->used + 1; i < 16; i++) st->buf[i] = 0;
        poly1305_blocks(st, st->buf, 1, 0);
    }
    h0 = st->h[0]; h1 = st->h[1]; h2 = st->h[2]; h3 = st->h[3]; h4 = st->h[4];
    /* full carry: h < 2^130 + a little */
    c = h1 >> 26; h1 &= LIMB; h2 += c;
    c = h2 >> 26; h2 &= LIMB; h3 += c;
    c = h3 >> 26; h3 &= LIMB; h4 += c;
    c = h4 >> 26; h4 &= LIMB; h0 += c * 5;
    c = h0 >> 26; h0 &= LIMB; h1 += c;
    /* g = h + 5 - 2^130; if that does not borrow, h >= P and h mod P = g */
    g0 = h0 + 5; c = g0 >> 26; g0 &= LIMB;
    g1 = h1 + c; c = g1 >> 26; g1 &= LIMB;
    g2 = h2 + c; c = g2 >> 26; g2 &= LIMB;
    g3 = h3 + c; c = g3 >> 26; g3 &= LIMB;
    g4 = h4 + c - (1u << 26);
    mask = (g4 >> 31) - 1u;             /* all ones if g4 did not borrow */
    h0 = (h0 & ~mask) | (g0 & mask); h1 = (h1 & ~mask) | (g1 & mask);
    h2 = (h2 & ~mask) | (g2 & mask); h3 = (h3 & ~mask) | (g3 & mask);
    h4 = (h4 & ~mask) | (g4 & mask);
    /* h mod 2^128 as four words, plus s, carrying */
    f = (uint64_t)(h0 | h1 << 26) + st->s[0];                 snn_store32_le(tag, (uint32_t)f);
    f = (uint64_t)(h1 >> 6 | h2 << 20) + st->s[1] + (f >> 32);  snn_store32_le(tag + 4, (uint32_t)f);
    f = (uint64_t)(h2 >> 12 | h3 << 14) + st->s[2] + (f >> 32); snn_store32_le(tag + 8, (uint32_t)f);
    f = (uint64_t)(h3 >> 18 | h4 << 8) + st->s[3] + (f >> 32);  snn_store32_le(tag + 12, (uint32_t)f);
    snn_wipe(st, sizeof *st);
}

void snn_poly1305(uint8_t tag[16], const uint8_t key[32], const uint8_t *m, size_t n)
{
    poly1305 st;
    poly1305_init(&st, key);
    poly1305_update(&st, m, n);
    poly1305_finish(&st, tag);
}

/* The key and nonce as the block function's words. */
static void chacha_words(uint32_t kw[8], uint32_t nw[3], const uint8_t key[32], const uint8_t nonce[12])
{
    int i;
    for (i = 0; i < 8; i++) kw[i] = snn_load32_le(key + 4 * i);
    for (i = 0; i < 3; i++) nw[i] = snn_load32_le(nonce + 4 * i);
}

/* One keystream block as bytes. */
static void chacha_block_bytes(uint8_t out[64], const uint32_t kw[8], uint32_t counter, const uint32_t nw[3])
{
    uint32_t w[16];
    int i;
    snn_chacha20_block(w, kw, counter, nw);
    for (i = 0; i < 16; i++) snn_store32_le(out + 4 * i, w[i]);
    snn_wipe(w, sizeof w);
}

/* KS_BLOCKS consecutive keystream blocks from `counter` as bytes: the
 * eight-lane block function above, the PRG's (a frame is at most
 * 2^26 blocks, so the 32-bit counter never wraps into the nonce). */
#define KS_BLOCKS SNN_PRG_BLOCKS
#define KS_BYTES  (64 * KS_BLOCKS)
static void chacha_keystream(uint8_t out[KS_BYTES], const uint32_t kw[8], uint32_t counter, const uint32_t nw[3])
{
    snn_chacha20_blocks(out, kw, counter, nw);
}

/* c = m XOR keystream for one chunk of at most KS_BYTES (c may be m):
 * copied, then XORed in place eight bytes at a time (memcpy: any
 * alignment, and no byte order involved), the tail byte by byte. */
static void xor_chunk(uint8_t *c, const uint8_t *m, const uint8_t *restrict ks, size_t n)
{
    uint8_t *restrict out = c;
    size_t i;
    if (c != m) memmove(c, m, n);
    for (i = 0; i + 8 <= n; i += 8) {
        uint64_t a, b;
        memcpy(&a, out + i, 8);
        memcpy(&b, ks + i, 8);
        a ^= b;
        memcpy(out + i, &a, 8);
    }
    for (; i < n; i++) out[i] ^= ks[i];
}

/* The AEAD's closing block: le64(|aad|) | le64(|ciphertext|). */
static void aead_lengths(poly1305 *st, size_t na, size_t n)
{
    uint8_t len[16];
    snn_store32_le(len, (uint32_t)na); snn_store32_le(len + 4, (uint32_t)((uint64_t)na >> 32));
    snn_store32_le(len + 8, (uint32_t)n); snn_store32_le(len + 12, (uint32_t)((uint64_t)n >> 32));
    poly1305_update(st, len, 16);
}

/*
 * snn_aead_seal -- AEAD_CHACHA20_POLY1305 encryption [RFC8439 2.8]:
 * Poly1305 key = the first 32 bytes of block 0 [RFC8439 2.6];
 * c = m XOR the keystream of blocks 1, 2, ...; tag = Poly1305 over
 * aad | pad16 | c | pad16 | le64(|aad|) | le64(|c|).  c may be m.
 */
void snn_aead_seal(uint8_t *c, uint8_t tag[16], const uint8_t key[32], const uint8_t nonce[12],
                   const uint8_t *aad, size_t na, const uint8_t *m, size_t n)
{
    uint32_t kw[8], nw[3], counter = 1;
    uint8_t ks[KS_BYTES];
    poly1305 st;
    size_t done, take;

    chacha_words(kw, nw, key, nonce);
    chacha_block_bytes(ks, kw, 0, nw);
    poly1305_init(&st, ks);
    poly1305_update(&st, aad, na);
    poly1305_pad16(&st);
    for (done = 0; done < n; done += take, counter += KS_BLOCKS) {
        chacha_keystream(ks, kw, counter, nw);
        take = n - done < KS_BYTES ? n - done : KS_BYTES;
        xor_chunk(c + done, m + done, ks, take);
        poly1305_update(&st, c + done, take);     /* the tag covers the ciphertext */
    }
    poly1305_pad16(&st);
    aead_lengths(&st, na, n);
    poly1305_finish(&st, tag);
    snn_wipe(ks, sizeof ks);
    snn_wipe(kw, sizeof kw);
}

/*
 * snn_aead_open -- AEAD_CHACHA20_POLY1305 decryption [RFC8439 2.8]: the
 * tag is recomputed over aad and c and compared in constant time; only if
 * it matches is c decrypted into m (m may be c).  0, or -1 (m untouched).
 */
int snn_aead_open(uint8_t *m, const uint8_t key[32], const uint8_t nonce[12],
                  const uint8_t *aad, size_t na, const uint8_t *c, size_t n, const uint8_t tag[16])
{
    uint32_t kw[8], nw[3], counter = 1;
    uint8_t ks[KS_BYTES], want[16], diff = 0;
    poly1305 st;
    size_t i, done, take;

    chacha_words(kw, nw, key, nonce);
    chacha_block_bytes(ks, kw, 0, nw);
    poly1305_init(&st, ks);
    poly1305_update(&st, aad, na);
    poly1305_pad16(&st);
    poly1305_update(&st, c, n);
    poly1305_pad16(&st);
    aead_lengths(&st, na, n);
    poly1305_finish(&st, want);
    for (i = 0; i < 16; i++) diff |= (uint8_t)(want[i] ^ tag[i]);
    if (diff != 0) {
        snn_wipe(ks, sizeof ks);
        snn_wipe(kw, sizeof kw);
        return -1;
    }
    for (done = 0; done < n; done += take, counter += KS_BLOCKS) {
        chacha_keystream(ks, kw, counter, nw);
        take = n - done < KS_BYTES ? n - done : KS_BYTES;
        xor_chunk(m + done, c + done, ks, take);
    }
    snn_wipe(ks, sizeof ks);
    snn_wipe(kw, sizeof kw);
    return 0;
}

/*
 * snn_channel_kdf -- the session key of the frames from endpoint `from` to
 * endpoint `to`, from the pair's pre-shared key K and the two handshake
 * nonces (n_init from the party that connected, n_resp from the one that
 * accepted).  A PRF built from the ChaCha20 block function F(key, counter,
 * nonce) alone, as a two-step cascade over a fixed-length input:
 *
 *     label = 0x534e4300 | from << 4 | to          ("SNC", the direction)
 *     T     = F(K, label, n_init)[0..31]
 *     key   = F(T, label, n_resp)[0..31]
 *
 * F keyed by a uniform key is a PRF of its 16-byte input (the assumption
 * behind ChaCha20 itself), and the cascade of a PRF over inputs of one
 * fixed length is a PRF; so the key is uniform to anyone without K, fresh
 * whenever either nonce is, and different for the two directions.
 */
void snn_channel_kdf(uint8_t out[32], const uint8_t psk[32], int from, int to,
                     const uint8_t n_init[12], const uint8_t n_resp[12])
{
    const uint32_t label = 0x534e4300u | (uint32_t)(from & 15) << 4 | (uint32_t)(to & 15);
    uint32_t kw[8], nw[3];
    uint8_t t[64];
    chacha_words(kw, nw, psk, n_init);
    chacha_block_bytes(t, kw, label, nw);
    chacha_words(kw, nw, t, n_resp);
    chacha_block_bytes(t, kw, label, nw);
    memcpy(out, t, 32);
    snn_wipe(t, sizeof t);
    snn_wipe(kw, sizeof kw);
}

/* ==== 8. WAN emulation (snn_set_wan; off unless set) ==================== */

void snn_set_wan(snn_party *p, unsigned latency_ms, unsigned mbytes_per_s)
{
    memset(&p->net.wan, 0, sizeof p->net.wan);
    p->net.wan.latency_us = (int64_t)latency_ms * 1000;
    p->net.wan.bytes_per_s = (uint64_t)mbytes_per_s * 1000000u;
}

/*
 * wan_deliver -- WAN emulation, for the frame of `len` bytes at the head of
 * the inbox of peer `from`: it crosses the link from that peer once the
 * link is free after its earlier frames (len / bandwidth), then takes the
 * latency; the party waits until then, reading every peer meanwhile so
 * that what arrives is stamped when it arrives.  Time starts when the
 * frame's first byte was read here: a frame that arrives while this party
 * computes is stamped when it next reads, so emulated times are upper
 * bounds of the network's.
 */
static int wan_deliver(snn_party *p, int from, size_t len, const char *ctx)
{
    const snn_inbox *b = &p->net.in[from];
    int64_t t0 = b->narr > 0 ? b->arr_us[0] : now_us(), done;
    int64_t tx = p->net.wan.bytes_per_s ? (int64_t)((double)len * 1e6 / (double)p->net.wan.bytes_per_s) : 0;
    done = (t0 > p->net.wan.link_free_us[from] ? t0 : p->net.wan.link_free_us[from]) + tx;
    p->net.wan.link_free_us[from] = done;
    return pump(p, -1, 0, -1, done + p->net.wan.latency_us, ctx);
}

/* ==== 9. The choke point: what sending and receiving share ============== */



static void describe(char *buf, size_t n, int proto, int step, int kind, size_t count, int from)
{
    snprintf(buf, n, "%s step %d (%zu x %s) from %s", snn_proto_name(proto), step, count,
             snn_kind_name(kind), who(from));
}

static int valid_peer(const snn_party *p, int k)
{
    return k >= 0 && k < SNN_NEND && k != p->id && p->net.fd[k] >= 0;
}

static int valid_kind(int kind) { return kind >= 0 && kind < SNN_KIND_COUNT; }

/* The channel's own frames (the handshake: Setup steps 0 and 4 as bytes,
 * 5 as Z_L), counted apart from payload.  Setup step 4 as Z_L is flow
 * control, payload like any other frame. */
static int is_handshake(int proto, int step, int kind)
{
    return proto == SNN_PROTO_SETUP && (((step == 0 || step == 4) && kind == SNN_KIND_BYTES)
                                        || (step == 5 && kind == SNN_KIND_ZL));
}

/* The AEAD nonce of a direction's frame number: 0^32 | le64(number). */
static void frame_nonce(uint8_t nonce[12], uint64_t number)
{
    snn_store32_le(nonce, 0);
    snn_store32_le(nonce + 4, (uint32_t)number);
    snn_store32_le(nonce + 8, (uint32_t)(number >> 32));
}

/* Test frames exist for the test runner only (p->net.test_frames). */
static int test_frame_refused(const snn_party *p, int proto)
{
    return proto == SNN_PROTO_TEST && !p->net.test_frames;
}

/*
 * frame_check -- what snn_send and snn_recv both check before a byte
 * moves: the frame (proto, step, kind) is in the inventory from its sender
 * to its receiver (sending: this party to peer; else peer to this party),
 * the peer is connected, count elements fit one frame, and a keyed party's
 * channel to the peer is sealed (but for the handshake).  ctx describes
 * the frame for messages; *nbytes gets its payload's size.
 */
static int frame_check(snn_party *p, int sending, int peer, int proto, int step, int kind, size_t count,
                       const char *ctx, size_t *nbytes)
{
    const msg_type *t = find_type(proto, step, kind);
    const int src = sending ? p->id : peer, dst = sending ? peer : p->id;
    const char *doing = sending ? "sending" : "expecting";
    size_t esz;

    if (!t || peer < 0 || peer >= SNN_NEND || !(t->from & (1u << src)) || !(t->to & (1u << dst))
        || test_frame_refused(p, proto)) {
        if (sending) return snn_fail(p, SNN_ERR_ARG, "%s to %s is not in the message inventory", ctx, who(peer));
        return snn_fail(p, SNN_ERR_ARG, "%s is not in the message inventory", ctx);
    }
    if (!valid_peer(p, peer))
        return snn_fail(p, SNN_ERR_ARG, "no connection to %s (%s %s)", who(peer), doing, ctx);
    esz = kind_size[kind];
    if (count > UINT32_MAX || count > (INBOX_MAX - SEAL_PRE - HDR_LEN - SEAL_TAG) / esz)
        return snn_fail(p, SNN_ERR_ARG, "%s: too many elements for one frame", ctx);
    *nbytes = count * esz;
    if (p->net.keyed && !p->net.chan[peer].sealed && !is_handshake(proto, step, kind))
        return snn_fail(p, SNN_ERR_ARG, "the channel to %s is not sealed (%s %s)", who(peer), doing, ctx);
    return 0;
}

/* The frame as the hook sees it (dir 0: sent, 1: received). */
static void frame_view(snn_frame *fr, int dir, int from, int to, int proto, int step, int kind, uint32_t round,
                       size_t count, unsigned char *h, size_t nbytes)
{
    fr->dir = dir; fr->from = from; fr->to = to; fr->proto = proto; fr->step = step; fr->kind = kind;
    fr->round = round; fr->count = count; fr->payload = h + HDR_LEN; fr->nbytes = nbytes;
    fr->header = h; fr->action = SNN_FRAME_SEND;
}

/* ==== 10. The choke point: sending ===================================== */

/* The 16-byte header of a frame this party sends (format at the top). */
static void put_header(unsigned char *h, const snn_party *p, int proto, int step, int kind, size_t count)
{
    h[0] = 'S'; h[1] = 'N'; h[2] = WIRE_VERSION; h[3] = (unsigned char)p->id;
    h[4] = (unsigned char)proto; h[5] = (unsigned char)step; h[6] = (unsigned char)kind; h[7] = 0;
    snn_store32_le(h + 8, p->net.round + 1);             /* Lamport stamp */
    snn_store32_le(h + 12, (uint32_t)count);
}

/* count elements of esz bytes as wire bytes, little-endian. */
static void put_elements(unsigned char *o, const void *x, size_t count, size_t esz)
{
    size_t i;
    if (esz == 8) {
        const uint64_t *v = x;
        for (i = 0; i < count; i++) snn_store64_le(o + 8 * i, v[i]);
    } else if (count) {
        memcpy(o, x, count * esz);
    }
}

/* Writes the frame at f + SEAL_PRE (header and wire payload bytes) to
 * `to`, sealed if the channel is: f[0..3] then take its sealed length
 * (frame format at the top).  *total: the bytes written. */
static int write_frame(snn_party *p, int to, unsigned char *f, size_t wire, const char *ctx, size_t *total)
{
    snn_channel *ch = &p->net.chan[to];
    unsigned char *h = f + SEAL_PRE;
    if (ch->sealed) {
        /* [RFC8439 2.8]: aad = the length, nonce = this direction's count */
        uint8_t nonce[12];
        snn_store32_le(f, (uint32_t)(HDR_LEN + wire));
        frame_nonce(nonce, ch->tx_count++);
        snn_aead_seal(h, h + HDR_LEN + wire, ch->tx_key, nonce, f, SEAL_PRE, h, HDR_LEN + wire);
        *total = SEAL_PRE + HDR_LEN + wire + SEAL_TAG;
        return write_all(p, to, f, *total, ctx);
    }
    *total = HDR_LEN + wire;
    return write_all(p, to, h, *total, ctx);
}

/* Counts a frame sent: total bytes written, nbytes of them its payload. */
static void count_sent(snn_party *p, int proto, int step, int kind, size_t nbytes, size_t total)
{
    snn_stats *st = &p->net.stats;
    if (is_handshake(proto, step, kind)) {
        st->channel_bytes += total;
    } else {
        st->sent[proto] += nbytes;
        st->bytes_sent += nbytes;
        st->header_bytes += HDR_LEN;
        st->channel_bytes += total - HDR_LEN - nbytes;
    }
    st->msgs_sent++;
    if (p->net.round + 1 > st->rounds) st->rounds = p->net.round + 1;
}

/*
 * snn_send -- frames count elements of `kind` and sends them to `to`.
 * Checks the frame against the inventory, stamps its round, counts its
 * bytes, shows it to the hook (which may alter the header and payload, or
 * drop the frame or close the connection instead: fault injection in the
 * test runner), seals it if the channel is sealed, and writes it.
 */
int snn_send(snn_party *p, int to, int proto, int step, int kind, const void *x, size_t count)
{
    unsigned char *f = NULL, *h;
    size_t nbytes = 0, total = 0, wire;
    snn_frame fr;
    char ctx[128];
    int rc = -1;

    if (p->err) return -1;
    if (!valid_kind(kind) || step < 0 || step > 255)
        return snn_fail(p, SNN_ERR_ARG, "bad frame %s step %d kind %d", snn_proto_name(proto), step, kind);
    describe(ctx, sizeof ctx, proto, step, kind, count, p->id);
    if (frame_check(p, 1, to, proto, step, kind, count, ctx, &nbytes) != 0) return -1;
    f = malloc(SEAL_PRE + HDR_LEN + nbytes + SEAL_TAG);
    if (!f) return snn_fail(p, SNN_ERR_NOMEM, "out of memory framing %s", ctx);
    h = f + SEAL_PRE;                            /* the frame; f[0..3]: its sealed length */
    put_header(h, p, proto, step, kind, count);
    put_elements(h + HDR_LEN, x, count, kind_size[kind]);

    frame_view(&fr, 0, p->id, to, proto, step, kind, p->net.round + 1, count, h, nbytes);
    if (p->net.hook) p->net.hook(p->net.hook_ctx, p, &fr);
    if (fr.action == SNN_FRAME_DROP) { rc = 0; goto cleanup; }
    if (fr.action == SNN_FRAME_CLOSE) {
        close(p->net.fd[to]);
        p->net.fd[to] = -1;
        rc = 0;
        goto cleanup;
    }
    wire = fr.nbytes < nbytes ? fr.nbytes : nbytes;     /* a hook may shorten it */
    SNN_GUARD(write_frame(p, to, f, wire, ctx, &total));
    count_sent(p, proto, step, kind, nbytes, total);
    rc = 0;
cleanup:
    if (f) snn_wipe(f, SEAL_PRE + HDR_LEN + nbytes + SEAL_TAG);   /* it may hold a key (Setup step 1) */
    free(f);
    return rc;
}

/* ==== 11. The choke point: receiving =================================== */

/*
 * open_sealed -- waits for the next sealed frame from `from` and opens it
 * in place: afterwards the inbox holds length | frame | tag, the frame in
 * the clear, and *body is the frame's length, at most max_body.  A frame
 * whose tag does not check (altered, replayed, reordered, dropped, or
 * sealed under another key) is an error naming the peer and the frame
 * expected.
 */
static int open_sealed(snn_party *p, int from, const char *want, size_t max_body, size_t *body)
{
    snn_channel *ch = &p->net.chan[from];
    snn_inbox *b = &p->net.in[from];
    uint8_t nonce[12];
    size_t len;

    if (pump(p, from, SEAL_PRE, -1, 0, want) != 0) return -1;
    len = snn_load32_le(b->buf);
    /* refused before it is buffered: no claimed length makes this party
     * hold more than the frame it expects (or a control frame) */
    if (len < HDR_LEN || len > max_body || len > INBOX_MAX - SEAL_PRE - SEAL_TAG)
        return blame(p, from, snn_fail(p, SNN_ERR_PROTO, "expected %s, got a sealed frame of %zu bytes (at most "
                                       "%zu expected)", want, len, max_body));
    if (pump(p, from, SEAL_PRE + len + SEAL_TAG, -1, 0, want) != 0) return -1;
    frame_nonce(nonce, ch->rx_count);
    if (snn_aead_open(b->buf + SEAL_PRE, ch->rx_key, nonce, b->buf, SEAL_PRE, b->buf + SEAL_PRE, len,
                      b->buf + SEAL_PRE + len) != 0)
        return snn_fail(p, SNN_ERR_PROTO,
                        "expected %s, got a frame that fails authentication: %s does not hold this "
                        "pair's key, or frames were altered, replayed, reordered or dropped in transit",
                        want, who(from));
    ch->rx_count++;
    *body = len;
    return 0;
}

/* Drops the first `used` bytes of an inbox (it is wiped when the party
 * closes). */
static void inbox_consume(snn_inbox *b, size_t used)
{
    b->len -= used;
    memmove(b->buf, b->buf + used, b->len);
    arrival_consume(b, used);
}

/* Whether header h from `from` is a control frame (Setup step 6, abort,
 * or 7, stalled) rather than the frame (proto, step) expected. */
static int is_control(const unsigned char *h, int from, int proto, int step)
{
    return h[0] == 'S' && h[1] == 'N' && h[2] == WIRE_VERSION && h[3] == from && h[4] == SNN_PROTO_SETUP
           && (h[5] == CTL_ABORT || h[5] == CTL_STALLED) && h[6] == SNN_KIND_BYTES
           && snn_load32_le(h + 12) <= ABORT_MAX && !(proto == SNN_PROTO_SETUP && step == h[5]);
}

/*
 * control_frame -- a control frame at offset off of the inbox of `from`:
 * the peer stopped (or is busy) and says why, an error; or it stalled,
 * and its abort follows: a notice that it waits for this party, which
 * waits for it, is an error, any other notice is skipped (1).
 */
static int control_frame(snn_party *p, int from, const char *want, size_t off, size_t tail, size_t body)
{
    snn_inbox *b = &p->net.in[from];
    const unsigned char *h = b->buf + off;
    const size_t n = snn_load32_le(h + 12);

    if (off && body != HDR_LEN + n)
        return blame(p, from, snn_fail(p, SNN_ERR_PROTO, "expected %s, got a sealed frame of %zu bytes", want, body));
    if (!off && pump(p, from, HDR_LEN + n, -1, 0, want) != 0) return -1;
    h = b->buf + off;
    if (h[5] == CTL_ABORT) return peer_aborted(p, from, h + HDR_LEN, n);
    if (n >= 1 && h[HDR_LEN] == p->id) {
        /* it says it waits for this party, which waits for it */
        char what[ABORT_MAX + 1];
        ctl_text(what, h + HDR_LEN + 1, n - 1);
        return blame(p, from, snn_fail(p, SNN_ERR_PROTO, "expected %s, got a notice that %s waits for %s",
                                       want, who(from), what));
    }
    inbox_consume(b, off + HDR_LEN + n + tail);       /* skip the notice */
    return 1;
}

/*
 * next_header -- waits for the header of the next frame from `from` that
 * is not a skipped notice (see control_frame): afterwards it is at offset
 * *off of the inbox; *off and *tail are the sealed framing around the
 * frame (SEAL_PRE, SEAL_TAG; 0 in the clear), *body a sealed frame's
 * length.  nbytes: the expected payload, the most a sealed frame may hold
 * (or a control frame's ABORT_MAX).
 */
static int next_header(snn_party *p, int from, int proto, int step, size_t nbytes, const char *want,
                       size_t *off, size_t *tail, size_t *body)
{
    int rc;
    for (;;) {
        *off = *tail = 0;
        if (p->net.chan[from].sealed) {
            if (open_sealed(p, from, want, HDR_LEN + (nbytes > ABORT_MAX ? nbytes : ABORT_MAX), body) != 0)
                return -1;
            *off = SEAL_PRE;
            *tail = SEAL_TAG;
        } else if (pump(p, from, HDR_LEN, -1, 0, want) != 0) {
            return -1;
        }
        if (!is_control(p->net.in[from].buf + *off, from, proto, step)) return 0;
        rc = control_frame(p, from, want, *off, *tail, *body);
        if (rc != 1) return rc;
    }
}

/* The header h must be a version-1 frame, and the one expected: sender,
 * protocol, step, kind and count. */
static int check_header(snn_party *p, const unsigned char *h, int from, int proto, int step, int kind,
                        size_t count, const char *want)
{
    char got[128];
    if (h[0] != 'S' || h[1] != 'N' || h[2] != WIRE_VERSION || h[7] != 0)
        return blame(p, from, snn_fail(p, SNN_ERR_PROTO, "expected %s, got bytes that are not a version-%d frame",
                                       want, WIRE_VERSION));
    if (h[3] != from || h[4] != proto || h[5] != step || h[6] != kind || snn_load32_le(h + 12) != count) {
        describe(got, sizeof got, h[4], h[5], h[6], snn_load32_le(h + 12), h[3]);
        return blame(p, from, snn_fail(p, SNN_ERR_PROTO, "expected %s, got %s", want, got));
    }
    return 0;
}

/*
 * get_elements -- count elements of `kind` from the wire bytes e into x,
 * each checked against its ring (Z_{L-1} < 2^64-1, Z_p < 67, bits 0/1):
 * one outside is an error naming the frame and the element.
 */
static int get_elements(snn_party *p, int from, int kind, void *x, size_t count, const unsigned char *e,
                        const char *want)
{
    size_t i;
    int range = 1;                 /* check each element's ring */
#ifdef SNN_TEST_HOOKS
    range = !SNN_TEST_ON(p, SNN_TEST_RECV_NO_RANGE);                 /* test runner only */
#endif
    if (kind_size[kind] == 8) {
        uint64_t *v = x;
        for (i = 0; i < count; i++) {
            v[i] = snn_load64_le(e + 8 * i);
            if (kind == SNN_KIND_ZLM1 && v[i] == SNN_LM1 && range)
                return blame(p, from, snn_fail(p, SNN_ERR_RANGE, "%s: element %zu is 2^64-1, outside Z_{L-1}",
                                               want, i));
        }
        return 0;
    }
    for (i = 0; range && i < count; i++) {
        if (kind == SNN_KIND_ZP && e[i] >= SNN_P)
            return blame(p, from, snn_fail(p, SNN_ERR_RANGE, "%s: element %zu is %u, outside Z_%d", want, i,
                                           (unsigned)e[i], SNN_P));
        if (kind == SNN_KIND_BIT && e[i] > 1)
            return blame(p, from, snn_fail(p, SNN_ERR_RANGE, "%s: element %zu is %u, not a bit", want, i,
                                           (unsigned)e[i]));
    }
    if (count) memcpy(x, e, count);                /* one byte each */
    return 0;
}

/* Counts a frame received: nbytes of payload, its round stamp. */
static void count_recv(snn_party *p, int proto, int step, int kind, size_t nbytes, uint32_t stamp)
{
    snn_stats *st = &p->net.stats;
    if (!is_handshake(proto, step, kind)) {
        st->recv[proto] += nbytes;
        st->bytes_recv += nbytes;
    }
    st->msgs_recv++;
    if (stamp > p->net.round) p->net.round = stamp;
    if (stamp > st->rounds) st->rounds = stamp;
}

/*
 * snn_recv -- receives the frame named by (from, proto, step, kind, count)
 * into x.  Any other frame, a short frame, a sealed frame that fails
 * authentication, or an element outside its ring is an error naming the
 * party, protocol and step.
 */
int snn_recv(snn_party *p, int from, int proto, int step, int kind, void *x, size_t count)
{
    snn_inbox *b;
    unsigned char *h;
    size_t nbytes = 0, off = 0, tail = 0, body = 0;
    uint32_t stamp;
    snn_frame fr;
    char want[128];

    if (p->err) return -1;
    if (!valid_kind(kind))
        return snn_fail(p, SNN_ERR_ARG, "bad element kind %d", kind);
    describe(want, sizeof want, proto, step, kind, count, from);
    if (frame_check(p, 0, from, proto, step, kind, count, want, &nbytes) != 0) return -1;
    b = &p->net.in[from];
    if (next_header(p, from, proto, step, nbytes, want, &off, &tail, &body) != 0) return -1;
    h = b->buf + off;
    if (check_header(p, h, from, proto, step, kind, count, want) != 0) return -1;
    if (off && body != HDR_LEN + nbytes)
        return blame(p, from, snn_fail(p, SNN_ERR_PROTO, "expected %s, got a sealed frame of %zu bytes", want, body));
    stamp = snn_load32_le(h + 8);
    if (!off && pump(p, from, HDR_LEN + nbytes, -1, 0, want) != 0) return -1;
    if (wan_on(p) && wan_deliver(p, from, off + HDR_LEN + nbytes + tail, want) != 0) return -1;
    h = b->buf + off;

    frame_view(&fr, 1, from, p->id, proto, step, kind, stamp, count, h, nbytes);
    if (p->net.hook) p->net.hook(p->net.hook_ctx, p, &fr);
    if (get_elements(p, from, kind, x, count, h + HDR_LEN, want) != 0) return -1;
    inbox_consume(b, off + HDR_LEN + nbytes + tail);
    count_recv(p, proto, step, kind, nbytes, stamp);
    return 0;
}

/* ==== 12. Connecting: addresses and sockets ============================ */

/* Splits "host:port" (IPv6 as "[::1]:7000") into host and port. */
static int split_hostport(const char *s, char *host, size_t hn, char *port, size_t pn)
{
    const char *colon, *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':') return -1;
        h = s + 1; hl = (size_t)(end - h); colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hn || strlen(colon + 1) == 0 || strlen(colon + 1) >= pn) return -1;
    {   /* a decimal port in 1..65535: 70000 would wrap, 0 binds any port */
        const char *c = colon + 1;
        unsigned long num = 0;
        for (; *c; c++) {
            if (*c < '0' || *c > '9') return -1;
            num = num * 10 + (unsigned long)(*c - '0');
            if (num > 65535) return -1;
        }
        if (num == 0) return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static int resolve(snn_party *p, const char *addr, int passive, struct addrinfo **res)
{
    char host[256], port[16];
    struct addrinfo hints;
    int rc;
    if (split_hostport(addr, host, sizeof host, port, sizeof port) != 0)
        return snn_fail(p, SNN_ERR_ARG, "bad address '%s' (want host:port, port 1..65535)", addr);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    rc = getaddrinfo(host, port, &hints, res);
    if (rc != 0) return snn_fail(p, SNN_ERR_ADDR, "cannot resolve '%s': %s", addr, gai_strerror(rc));
    return 0;
}

static int listen_on(snn_party *p, const char *addr)
{
    struct addrinfo *res, *ai;
    int fd = -1, one = 1, saved = 0;
    if (resolve(p, addr, 1, &res) != 0) return -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) { saved = errno; continue; }
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 8) == 0) break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return snn_fail(p, SNN_ERR_ADDR, "cannot listen on %s: %s", addr, strerror(saved));
    if (set_nonblock(fd) != 0) {
        close(fd);
        return snn_fail(p, SNN_ERR_IO, "fcntl: %s", strerror(errno));
    }
    p->net.listen_fd = fd;
    return 0;
}

/* One non-blocking connect attempt bounded by the deadline. */
static int try_connect(const struct addrinfo *ai, int64_t deadline, int *err)
{
    int fd;
    if (deadline - now_ms() <= 0) return -1;     /* keep the last real error */
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) { *err = errno; return -1; }
    if (set_nonblock(fd) != 0) { *err = errno; close(fd); return -1; }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        struct pollfd pf;
        int soerr = 0, rc;
        socklen_t sl = sizeof soerr;
        int64_t left = deadline - now_ms();
        if (errno != EINPROGRESS || left <= 0) { *err = errno; close(fd); return -1; }
        pf.fd = fd; pf.events = POLLOUT; pf.revents = 0;
        do rc = poll(&pf, 1, (int)left); while (rc < 0 && errno == EINTR);
        if (rc <= 0) { *err = rc == 0 ? ETIMEDOUT : errno; close(fd); return -1; }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            *err = soerr ? soerr : errno;
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* ==== 13. The channel handshake (Setup steps 0, 4, 5) =================== */

static void put64(unsigned char *b, uint64_t x) { snn_store32_le(b, (uint32_t)x); snn_store32_le(b + 4, (uint32_t)(x >> 32)); }
static uint64_t get64(const unsigned char *b) { return (uint64_t)snn_load32_le(b) | (uint64_t)snn_load32_le(b + 4) << 32; }

/* This party's handshake nonce: fresh from the OS with keys, else zero. */
static int hello_nonce(snn_party *p, uint8_t nonce[12], int step)
{
    memset(nonce, 0, 12);
    if (p->net.keyed && snn_os_random(nonce, 12) != 0)
        return snn_fail(p, SNN_ERR_IO, "cannot read the operating system's randomness (Setup step %d)", step);
    return 0;
}

/* Both ends hold keys or neither does; otherwise refuse, naming the peer. */
static int keys_agree(snn_party *p, int k, uint32_t peer_keyed, int step)
{
    if (peer_keyed > 1)
        return snn_fail(p, SNN_ERR_PROTO, "%s sent a malformed handshake (Setup step %d)", who(k), step);
    if (p->net.keyed && !peer_keyed)
        return snn_fail(p, SNN_ERR_PROTO, "%s has no channel keys and this party will not run in the clear: "
                        "start every party with --keys (Setup step %d)", who(k), step);
    if (!p->net.keyed && peer_keyed)
        return snn_fail(p, SNN_ERR_PROTO, "%s requires sealed channels and this party has no keys: "
                        "start it with --keys (Setup step %d)", who(k), step);
    if (p->net.keyed && !p->net.chan[k].have_psk)
        return snn_fail(p, SNN_ERR_ARG, "no key for the pair with %s (Setup step %d)", who(k), step);
    return 0;
}

/*
 * seal_channel -- both session keys from the pair key and the two nonces
 * (snn_channel_kdf), then Setup step 5 each way: the first authenticated
 * frame, the configuration word sealed.  A peer without this pair's key
 * fails here, before any protocol frame.
 */
static int seal_channel(snn_party *p, int k, const uint8_t n_init[12], const uint8_t n_resp[12], int initiator)
{
    snn_channel *ch = &p->net.chan[k];
    uint64_t cfg = CONFIG_WORD, got = 0;
    snn_channel_kdf(ch->tx_key, ch->psk, p->id, k, n_init, n_resp);
    snn_channel_kdf(ch->rx_key, ch->psk, k, p->id, n_init, n_resp);
    ch->tx_count = ch->rx_count = 0;
    ch->sealed = 1;
    if (initiator) {
        SNN_GUARD(snn_send(p, k, SNN_PROTO_SETUP, 5, SNN_KIND_ZL, &cfg, 1));
        SNN_GUARD(snn_recv(p, k, SNN_PROTO_SETUP, 5, SNN_KIND_ZL, &got, 1));
    } else {
        SNN_GUARD(snn_recv(p, k, SNN_PROTO_SETUP, 5, SNN_KIND_ZL, &got, 1));
        SNN_GUARD(snn_send(p, k, SNN_PROTO_SETUP, 5, SNN_KIND_ZL, &cfg, 1));
    }
    if (got != cfg)
        return snn_fail(p, SNN_ERR_PROTO, "%s sealed another configuration word (Setup step 5)", who(k));
    return 0;
cleanup:
    return -1;
}

/* The side that connected: hello (step 0), reply (step 4), step 5. */
static int handshake_initiate(snn_party *p, int k)
{
    uint8_t hello[HELLO_LEN], reply[REPLY_LEN];
    int rc = -1;
    put64(hello, CONFIG_WORD);
    snn_store32_le(hello + 8, (uint32_t)(p->net.keyed != 0));
    SNN_GUARD(hello_nonce(p, hello + 12, 0));
    SNN_GUARD(snn_send(p, k, SNN_PROTO_SETUP, 0, SNN_KIND_BYTES, hello, HELLO_LEN));
    SNN_GUARD(snn_recv(p, k, SNN_PROTO_SETUP, 4, SNN_KIND_BYTES, reply, REPLY_LEN));
    SNN_GUARD(keys_agree(p, k, snn_load32_le(reply), 4));
    if (p->net.keyed) SNN_GUARD(seal_channel(p, k, hello + 12, reply + 4, 1));
    rc = 0;
cleanup:
    snn_wipe(hello, sizeof hello);
    snn_wipe(reply, sizeof reply);
    return rc;
}

/* The side that accepted, once the hello is in: reply, then step 5.  The
 * reply goes out before a refusal, so the peer learns why. */
static int handshake_respond(snn_party *p, int k, const uint8_t hello[HELLO_LEN])
{
    uint8_t reply[REPLY_LEN];
    int rc = -1;
    if (get64(hello) != CONFIG_WORD)
        return snn_fail(p, SNN_ERR_PROTO, "%s runs another configuration (Setup step 0: %016llx, mine %016llx)",
                        who(k), (unsigned long long)get64(hello), (unsigned long long)CONFIG_WORD);
    snn_store32_le(reply, (uint32_t)(p->net.keyed != 0));
    SNN_GUARD(hello_nonce(p, reply + 4, 4));
    SNN_GUARD(snn_send(p, k, SNN_PROTO_SETUP, 4, SNN_KIND_BYTES, reply, REPLY_LEN));
    SNN_GUARD(keys_agree(p, k, snn_load32_le(hello + 8), 0));
    if (p->net.keyed) SNN_GUARD(seal_channel(p, k, hello + 12, reply + 4, 0));
    rc = 0;
cleanup:
    snn_wipe(reply, sizeof reply);
    return rc;
}

/* ==== 14. The policy without keys: loopback only, unless --insecure ===== */

int snn_is_loopback(const void *sockaddr)
{
    const struct sockaddr *sa = sockaddr;
    if (sa->sa_family == AF_UNIX) return 1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = sockaddr;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = sockaddr;
        const unsigned char *b = a->sin6_addr.s6_addr;
        static const unsigned char loop[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        return memcmp(b, loop, 16) == 0 || (memcmp(b, mapped, 12) == 0 && b[12] == 127);
    }
    return 0;
}

/* Whether p may talk to a peer at sa: with keys always (the channel is
 * sealed), without keys only on loopback or with --insecure. */
static int policy_allows(const snn_party *p, const struct sockaddr *sa)
{
    return p->net.keyed || p->net.insecure || snn_is_loopback(sa);
}

#define POLICY_HINT "not a loopback address, and without keys the channel would be in the clear " \
                    "(give every party --keys DIR, or --insecure)"

/* ==== 15. The mesh and the owner: connecting, listening, accepting ===== */

/* Connects to peer k at addr, retrying until the timeout, then runs the
 * handshake.  Without keys, an address off loopback is refused first. */
static int connect_to(snn_party *p, int k, const char *addr)
{
    struct addrinfo *res, *ai;
    int64_t deadline = now_ms() + p->net.timeout_ms;
    int fd = -1, err = 0;

    if (resolve(p, addr, 0, &res) != 0) return -1;
    for (ai = res; ai; ai = ai->ai_next)
        if (!policy_allows(p, ai->ai_addr)) {
            freeaddrinfo(res);
            return snn_fail(p, SNN_ERR_ARG, "refusing to connect to %s at %s: " POLICY_HINT, who(k), addr);
        }
    while (fd < 0) {
        for (ai = res; ai && fd < 0; ai = ai->ai_next) fd = try_connect(ai, deadline, &err);
        if (fd >= 0 || now_ms() >= deadline) break;
        sleep_ms(50);
    }
    freeaddrinfo(res);
    if (fd < 0)
        return snn_fail(p, SNN_ERR_TIMEOUT, "cannot connect to %s at %s within %d s: %s",
                        who(k), addr, p->net.timeout_ms / 1000, strerror(err));
    tune_socket(fd);
    p->net.fd[k] = fd;
    return handshake_initiate(p, k);
}

/*
 * opening -- a connection just accepted on fd (from sa) must open as an
 * expected peer: a version-1 hello whose sender is one of `allowed` and
 * not yet connected, the policy (without keys: loopback only), and the
 * handshake, all within OPENING_MS (or p->net.timeout_ms if shorter).  0: the
 * peer is connected.  1: a stray, closed, with why it was refused in
 * `why`; the party is as it was before (no error, no counts, no round).
 * A second owner while this server has one is told that it is busy.
 */
static int opening(snn_party *p, int fd, const struct sockaddr_storage *sa, socklen_t sl, unsigned allowed,
                   char *why, size_t wn)
{
    const int saved_timeout = p->net.timeout_ms;
    const uint32_t saved_round = p->net.round;
    const snn_stats saved_stats = p->net.stats;
    int64_t deadline;
    unsigned char h[HDR_LEN];
    uint8_t hello[HELLO_LEN];
    size_t got = 0;
    int k, rc;

    if (set_nonblock(fd) != 0) {
        snprintf(why, wn, "fcntl: %s", strerror(errno));
        close(fd);
        return 1;
    }
    tune_socket(fd);
    deadline = now_ms() + (p->net.timeout_ms < OPENING_MS ? p->net.timeout_ms : OPENING_MS);
    /* The hello's header says who this is */
    while (got < HDR_LEN) {
        struct pollfd pf;
        ssize_t r;
        const int64_t left = deadline - now_ms();
        if (left <= 0) {
            snprintf(why, wn, "no hello within %d ms", OPENING_MS);
            close(fd);
            return 1;
        }
        pf.fd = fd; pf.events = POLLIN; pf.revents = 0;
        if (poll(&pf, 1, (int)left) < 0 && errno != EINTR) {
            snprintf(why, wn, "poll: %s", strerror(errno));
            close(fd);
            return 1;
        }
        r = recv(fd, h + got, HDR_LEN - got, 0);
        if (r > 0) got += (size_t)r;
        else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            snprintf(why, wn, "closed before its hello");
            close(fd);
            return 1;
        }
    }
    k = h[3];
    if (h[0] == 'S' && h[1] == 'N' && k == SNN_CLIENT && p->net.fd[k] >= 0 && p->id < SNN_NPARTY) {
        const unsigned char none = 255;
        write_ctl(fd, NULL, p->id, CTL_ABORT, &none, 1, BUSY_TEXT);
        snprintf(why, wn, "a second owner, told that this server is busy");
        close(fd);
        return 1;
    }
    if (h[0] != 'S' || h[1] != 'N' || h[2] != WIRE_VERSION || k >= SNN_NEND || !(allowed & (1u << k))
        || p->net.fd[k] >= 0) {
        snprintf(why, wn, "not a SecureNN hello from an expected peer");
        close(fd);
        return 1;
    }
    if (!policy_allows(p, (const struct sockaddr *)sa)) {
        char host[64];                        /* a numeric IPv4 or IPv6 address */
        if (getnameinfo((const struct sockaddr *)sa, sl, host, sizeof host, NULL, 0, NI_NUMERICHOST) != 0)
            strcpy(host, "?");
        snprintf(why, wn, "refusing %s connecting from %s: " POLICY_HINT, who(k), host);
        close(fd);
        return 1;
    }
    p->net.fd[k] = fd;
    p->net.timeout_ms = (int)(deadline - now_ms() > 1 ? deadline - now_ms() : 1);
    rc = inbox_reserve(p, k, HDR_LEN);
    if (rc == 0) {
        memcpy(p->net.in[k].buf, h, HDR_LEN);
        p->net.in[k].len = HDR_LEN;
        rc = snn_recv(p, k, SNN_PROTO_SETUP, 0, SNN_KIND_BYTES, hello, HELLO_LEN);
    }
    if (rc == 0) rc = handshake_respond(p, k, hello);
    p->net.timeout_ms = saved_timeout;
    snn_wipe(hello, sizeof hello);
    if (rc == 0) return 0;
    /* A stray that claimed to be k: closed, and every trace of it undone */
    {
        const char *m = p->errmsg;
        const size_t me = strlen(who(p->id));           /* without "P0: " */
        if (strncmp(m, who(p->id), me) == 0 && m[me] == ':') m += me + 2;
        snprintf(why, wn, "%s", m);
    }
    close(fd);
    p->net.fd[k] = -1;
    if (p->net.in[k].buf) snn_wipe(p->net.in[k].buf, p->net.in[k].cap);
    p->net.in[k].len = 0;
    p->net.in[k].narr = 0;
    {
        snn_channel *ch = &p->net.chan[k];
        snn_wipe(ch->tx_key, sizeof ch->tx_key);
        snn_wipe(ch->rx_key, sizeof ch->rx_key);
        ch->tx_count = ch->rx_count = 0;
        ch->sealed = 0;
    }
    p->err = SNN_OK;
    p->err_from = -1;
    p->errmsg[0] = '\0';
    p->net.round = saved_round;
    p->net.stats = saved_stats;
    return 1;
}

/*
 * Waits for one connection on the listening socket that opens as one of
 * `allowed` (opening, above).  A connection that does not (a stray: a port
 * scan, "GET /", a peer without this pair's key) is closed with a one-line
 * notice on stderr and the wait goes on, up to STRAY_MAX of them.  The
 * wait is bounded by wait_ms (0: no bound; `awaited` names who is
 * awaited in the error), and meanwhile every connected server is watched:
 * one that closes (it stopped, or died) ends the wait with an error
 * naming it.  *strays and last (the last stray's reason, for the error)
 * carry over the calls of one wait.
 */
static int accept_one(snn_party *p, unsigned allowed, int wait_ms, const char *awaited, int *strays,
                      char last[STRAY_WHY])
{
    const int64_t deadline = now_ms() + wait_ms;
    char why[STRAY_WHY];

    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = -1, rc;

        while (fd < 0) {
            struct pollfd pf[SNN_NPARTY + 1];
            int ids[SNN_NPARTY + 1], np = 0, i, k;
            const int64_t left = deadline - now_ms();
            if (wait_ms > 0 && left <= 0)
                return snn_fail(p, SNN_ERR_TIMEOUT, "%s never connected within %d s (Setup step 0)%s%s", awaited,
                                wait_ms / 1000, last[0] ? "; the last connection refused: " : "", last);
            pf[np].fd = p->net.listen_fd; pf[np].events = POLLIN; pf[np].revents = 0; ids[np++] = -1;
            for (k = 0; k < SNN_NPARTY; k++)
                if (k != p->id && p->net.fd[k] >= 0) {
                    pf[np].fd = p->net.fd[k]; pf[np].events = POLLIN; pf[np].revents = 0; ids[np++] = k;
                }
            if (poll(pf, (nfds_t)np, wait_ms > 0 ? (int)(left < 1000000 ? left : 1000000) : 1000000) < 0) {
                if (errno == EINTR) continue;
                return snn_fail(p, SNN_ERR_IO, "poll: %s", strerror(errno));
            }
            for (i = 1; i < np; i++) {
                long r;
                if (!(pf[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
                if ((r = inbox_fill(p, ids[i])) == -1) return -1;
                if (r == -2) {
                    /* a peer that stopped says why (its abort); else it died */
                    if (find_abort(p, ids[i]) == 0)
                        blame(p, ids[i], snn_fail(p, SNN_ERR_PEER_CLOSED, "%s closed the connection while this "
                                                  "party waited for %s (Setup step 0)", who(ids[i]), awaited));
                    else if (wait_ms > 0 && strstr(p->errmsg, "stopped: the owner never connected")) {
                        /* it gave up on the owner first, within the same
                         * --owner-wait: this party's own wait is as good as over */
                        p->err = SNN_OK;
                        p->err_from = -1;
                        return snn_fail(p, SNN_ERR_TIMEOUT, "%s never connected within %d s (Setup step 0)",
                                        awaited, wait_ms / 1000);
                    }
                    if (last[0]) {        /* perhaps why it stopped: the stray was the peer it waits for */
                        const size_t n = strlen(p->errmsg);
                        snprintf(p->errmsg + n, sizeof p->errmsg - n, "; the last connection refused: %s", last);
                    }
                    return -1;
                }
            }
            if (!(pf[0].revents & POLLIN)) continue;
            sl = sizeof sa;
            fd = accept(p->net.listen_fd, (struct sockaddr *)&sa, &sl);
            if (fd < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                return snn_fail(p, SNN_ERR_IO, "accept: %s", strerror(errno));
        }
        rc = opening(p, fd, &sa, sl, allowed, why, sizeof why);
        if (rc == 0) return 0;
        ++*strays;
        memcpy(last, why, STRAY_WHY);
        fprintf(stderr, "securenn: %s: notice: closed a connection that did not open as %s: %s; still listening "
                "(%d of at most %d such)\n", who(p->id), awaited, why, *strays, STRAY_MAX);
        fflush(stderr);
        if (*strays >= STRAY_MAX)
            return snn_fail(p, SNN_ERR_PROTO, "%d connections did not open as %s, the last: %s (Setup step 0)",
                            *strays, awaited, last);
    }
}

/*
 * snn_connect_tcp -- the server mesh: Pk listens on peers[k] (unless
 * snn_listen already did), connects to every lower id, and accepts every
 * higher one.
 */
int snn_listen(snn_party *p, const char *addr)
{
    if (p->err) return -1;
    if (p->id < 0 || p->id >= SNN_NPARTY) return snn_fail(p, SNN_ERR_ARG, "party id must be 0, 1 or 2");
    if (p->net.listen_fd >= 0) return 0;
    return listen_on(p, addr);
}

int snn_connect_tcp(snn_party *p, const char *const peers[SNN_NPARTY])
{
    char last[STRAY_WHY] = "";
    int k, strays = 0;
    if (p->err) return -1;
    if (p->id < 0 || p->id >= SNN_NPARTY) return snn_fail(p, SNN_ERR_ARG, "party id must be 0, 1 or 2");
    SNN_GUARD(snn_listen(p, peers[p->id]));
    for (k = 0; k < p->id; k++) SNN_GUARD(connect_to(p, k, peers[k]));
    /* Accept every higher id; an owner that connects early is kept for
     * snn_accept_client rather than refused. */
    for (;;) {
        unsigned want = 0;
        char missing[32] = "";
        for (k = p->id + 1; k < SNN_NPARTY; k++)
            if (p->net.fd[k] < 0) {
                want |= 1u << k;
                snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                         missing[0] ? " and " : "", who(k));   /* name the parties still missing */
            }
        if (!want) break;
        if (p->net.fd[SNN_CLIENT] < 0) want |= 1u << SNN_CLIENT;
        SNN_GUARD(accept_one(p, want, p->net.timeout_ms, missing, &strays, last));
    }
    return 0;
cleanup:
    return -1;
}

int snn_connect_client_tcp(snn_party *p, const char *const peers[SNN_NPARTY])
{
    int k;
    if (p->err) return -1;
    for (k = 0; k < SNN_NPARTY; k++) SNN_GUARD(connect_to(p, k, peers[k]));
    return 0;
cleanup:
    return -1;
}

int snn_accept_client(snn_party *p)
{
    return snn_accept_owner(p, p->net.timeout_ms);
}

int snn_accept_owner(snn_party *p, int wait_ms)
{
    char last[STRAY_WHY] = "";
    int strays = 0;
    if (p->err) return -1;
    if (p->net.fd[SNN_CLIENT] >= 0) return 0;       /* it connected during the mesh setup */
    if (p->net.listen_fd < 0) return snn_fail(p, SNN_ERR_ARG, "not listening for the owner");
    return accept_one(p, 1u << SNN_CLIENT, wait_ms, "the owner", &strays, last);
}

int snn_connect_fds(snn_party *p, const int fd[SNN_NEND])
{
    uint8_t hello[HELLO_LEN];
    int k;
    if (p->err) return -1;
    for (k = 0; k < SNN_NEND; k++) {
        if (k == p->id || fd[k] < 0) continue;
        if (set_nonblock(fd[k]) != 0) return snn_fail(p, SNN_ERR_IO, "fcntl: %s", strerror(errno));
        p->net.fd[k] = fd[k];
    }
    if (!p->net.keyed) return 0;
    /* as over TCP: greet every lower id, then answer every higher one */
    for (k = 0; k < p->id; k++)
        if (p->net.fd[k] >= 0) SNN_GUARD(handshake_initiate(p, k));
    for (k = p->id + 1; k < SNN_NEND; k++) {
        if (p->net.fd[k] < 0) continue;
        SNN_GUARD(snn_recv(p, k, SNN_PROTO_SETUP, 0, SNN_KIND_BYTES, hello, HELLO_LEN));
        SNN_GUARD(handshake_respond(p, k, hello));
    }
    return 0;
cleanup:
    return -1;
}

int snn_socketpair_mesh(int fds[SNN_NEND][SNN_NEND], int nend)
{
    int i, k;
    for (i = 0; i < SNN_NEND; i++)
        for (k = 0; k < SNN_NEND; k++) fds[i][k] = -1;
    if (nend < 0 || nend > SNN_NEND) { errno = EINVAL; return -1; }
    for (i = 0; i < nend; i++)
        for (k = i + 1; k < nend; k++) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
                int saved = errno;
                snn_socketpair_keep(fds, nend, -1);     /* close what was made */
                errno = saved;
                return -1;
            }
            fds[i][k] = sv[0];
            fds[k][i] = sv[1];
        }
    return 0;
}

void snn_socketpair_keep(int fds[SNN_NEND][SNN_NEND], int nend, int keep)
{
    int i, k;
    for (i = 0; i < nend; i++)
        for (k = 0; k < nend; k++)
            if (i != keep && fds[i][k] >= 0) { close(fds[i][k]); fds[i][k] = -1; }
}

/* ==== 16. Operating-system randomness and wiping ======================== */

/*
 * snn_os_random -- n bytes from the operating system's randomness source
 * (/dev/urandom).  The one place the program reads it: pairwise and
 * private keys, channel nonces, key files and seeds.  0, or -1 with errno.
 */
int snn_os_random(void *buf, size_t n)
{
    unsigned char *b = buf;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0) return -1;
    while (n > 0) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            errno = e;
            return -1;
        }
        b += r;
        n -= (size_t)r;
    }
    close(fd);
    return 0;
}

/* snn_wipe -- erases secrets; the volatile write is not optimised away. */
void snn_wipe(void *buf, size_t n)
{
    /* Volatile stores, which the compiler may not drop; a word at a time
     * over the aligned middle, where a byte loop stores one byte per step. */
    volatile unsigned char *b = (volatile unsigned char *)buf;
    volatile uint64_t *w;
    while (n > 0 && ((uintptr_t)b & 7) != 0) { *b++ = 0; n--; }
    w = (volatile uint64_t *)(volatile void *)b;
    for (; n >= 8; n -= 8) *w++ = 0;
    b = (volatile unsigned char *)w;
    while (n-- > 0) *b++ = 0;
}

/* snn_free_wiped -- wipes, then frees (the policy for secrets, securenn.h). */
void snn_free_wiped(void *buf, size_t n)
{
    if (!buf) return;
    snn_wipe(buf, n);
    free(buf);
}

/* ==== 17. Channel keys: files made by keygen, loaded by --keys ========== */

const char *snn_key_file(int a, int b)
{
    static const char names[SNN_NEND][SNN_NEND][16] = {
        { "",             "p0-p1.key",    "p0-p2.key",    "p0-owner.key" },
        { "p0-p1.key",    "",             "p1-p2.key",    "p1-owner.key" },
        { "p0-p2.key",    "p1-p2.key",    "",             "p2-owner.key" },
        { "p0-owner.key", "p1-owner.key", "p2-owner.key", "" },
    };
    return a >= 0 && a < SNN_NEND && b >= 0 && b < SNN_NEND && a != b ? names[a][b] : "?";
}

/* dir/name into path; -1 if it does not fit. */
static int key_path(char *path, size_t n, const char *dir, int a, int b)
{
    int w = snprintf(path, n, "%s/%s", dir, snn_key_file(a, b));
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

/*
 * snn_keygen -- six fresh pair keys in dir.  All six names are checked
 * first, so a refusal writes nothing.  Each file is created exclusively
 * with mode 0600 (then set to exactly 0600, whatever the umask), gets 32
 * bytes from the operating system and is synced.
 */
int snn_keygen(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    struct stat st;
    uint8_t key[32];
    int a, b, fd;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "keygen: cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "keygen: %s is not a directory", dir);
        return -1;
    }
    for (a = 0; a < SNN_NEND; a++)
        for (b = a + 1; b < SNN_NEND; b++) {
            if (key_path(path, sizeof path, dir, a, b) != 0) {
                snprintf(err, errlen, "keygen: the directory name is too long");
                return -1;
            }
            if (lstat(path, &st) == 0) {
                snprintf(err, errlen, "keygen: %s exists; keygen never overwrites a key "
                         "(remove the old keys or choose another directory)", path);
                return -1;
            }
        }
    for (a = 0; a < SNN_NEND; a++)
        for (b = a + 1; b < SNN_NEND; b++) {
            ssize_t w;
            (void)key_path(path, sizeof path, dir, a, b);
            if (snn_os_random(key, sizeof key) != 0) {
                snprintf(err, errlen, "keygen: cannot read the operating system's randomness: %s", strerror(errno));
                return -1;
            }
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
            if (fd < 0 || fchmod(fd, 0600) != 0) {
                snprintf(err, errlen, "keygen: cannot create %s: %s", path, strerror(errno));
                if (fd >= 0) close(fd);
                snn_wipe(key, sizeof key);
                return -1;
            }
            do w = write(fd, key, sizeof key); while (w < 0 && errno == EINTR);
            snn_wipe(key, sizeof key);
            if (w != (ssize_t)sizeof key || fsync(fd) != 0) {
                snprintf(err, errlen, "keygen: cannot write %s: %s", path, w < 0 ? strerror(errno) : "short write");
                close(fd);
                return -1;
            }
            close(fd);
        }
    return 0;
}

/*
 * snn_load_keys -- the keys of p's own pairs (with every other endpoint),
 * each from its file in dir: a regular file of exactly 32 bytes that
 * neither group nor others may read or write.  Anything else is an error
 * naming the file; nothing is loaded unless every file is right.
 */
int snn_load_keys(snn_party *p, const char *dir)
{
    char path[4096];
    uint8_t key[SNN_NEND][33];
    struct stat st;
    int k, rc = -1;

    if (p->err) return -1;
    for (k = 0; k < SNN_NEND; k++) {
        ssize_t r;
        size_t got = 0;
        int fd;
        if (k == p->id) continue;
        if (key_path(path, sizeof path, dir, p->id, k) != 0) {
            snn_fail(p, SNN_ERR_ARG, "--keys: the directory name is too long");
            goto cleanup;
        }
        fd = open(path, O_RDONLY);
        if (fd < 0) {
            snn_fail(p, SNN_ERR_ARG, "key file %s: %s (make keys with: securenn keygen DIR)", path, strerror(errno));
            goto cleanup;
        }
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            snn_fail(p, SNN_ERR_ARG, "key file %s is not a regular file", path);
            goto cleanup;
        }
        if (st.st_mode & (S_IRWXG | S_IRWXO)) {
            close(fd);
            snn_fail(p, SNN_ERR_ARG, "key file %s may be read or written by group or others (mode %03o): "
                     "chmod 600 %s", path, (unsigned)(st.st_mode & 0777), path);
            goto cleanup;
        }
        while (got < sizeof key[k]) {          /* up to 33 bytes: 32 and no more */
            r = read(fd, key[k] + got, sizeof key[k] - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        close(fd);
        if (got != 32) {
            snn_fail(p, SNN_ERR_ARG, "key file %s holds %s bytes (a key made by securenn keygen is exactly 32)",
                     path, got > 32 ? "more than 32" : got == 0 ? "0" : "fewer than 32");
            goto cleanup;
        }
    }
    for (k = 0; k < SNN_NEND; k++)
        if (k != p->id) snn_set_channel_key(p, k, key[k]);
    rc = 0;
cleanup:
    snn_wipe(key, sizeof key);
    return rc;
}

void snn_set_channel_key(snn_party *p, int peer, const uint8_t key[32])
{
    if (peer < 0 || peer >= SNN_NEND || peer == p->id) return;
    memcpy(p->net.chan[peer].psk, key, 32);
    p->net.chan[peer].have_psk = 1;
    p->net.keyed = 1;
}
