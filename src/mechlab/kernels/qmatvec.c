/* Fused decode + matrix-vector product for trellis-coded weights in their stored format (see
 * mechlab/quant/qtip.py and mechlab/quant/trellis.py for the maths).
 *
 * A matrix W (m, n) is stored as (m/16)·(n/16) tiles of 16×16 weights in row-major order of the tile grid; a tile
 * is one tail-biting trellis sequence of 256 weights (row-major inside the tile), k bits per weight packed MSB
 * first, so a tile is 32·k bytes. With c_t at stream bits [k·t, k·t + k), the state of step t is the L-bit window
 * of the (circular) stream that ends at bit k·(t + 1), read big-endian: no state has to be materialised.
 *
 *     y = s_out ⊙ H_m ( α · W_code · H_n (s_in ⊙ x) )       H: the normalised (block) Hadamard transform
 *
 * with the 1MAD code: code(s) = (bytesum(s·34038481 + 76625530 mod 2^32) − 510) · α, α folding 1/147.8…, the
 * table's unit-RMS normalisation and the layer's scale. The 510 is taken out of the inner loop:
 * Σ_j (b_ij − 510) x_j = Σ_j b_ij x_j − 510 Σ_j x_j.
 *
 * Eight consecutive steps (8·k bits = k bytes, so every group starts on a byte) are decoded in one AVX2 register:
 * one 8-byte load broadcast, a byte shuffle that assembles each lane's big-endian 32-bit word, a per-lane shift and
 * mask (the states), a multiply-add (1MAD's hash), two horizontal byte/word sums (maddubs, madd) and a conversion;
 * one fused multiply-add per 8 weights against x. With AVX-512 (F + BW) a whole tile row of 16 steps (2·k bytes,
 * read from one 16-byte load broadcast to the four 128-bit lanes) is decoded by the same instructions in one
 * 512-bit register, half the instructions per weight. Row quads of a tile-row share the x loads; threads split the
 * tile-rows (OpenMP). A portable scalar path gives the same byte sums where AVX2 is missing; the vector paths differ
 * from it only in the order of the float additions.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#define MAD_MUL 34038481u
#define MAD_ADD 76625530u

/* Normalised Walsh–Hadamard transform of x[0..n), n a power of two. */
static void fwht(float *x, int n) {
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    const float c = 1.0f / sqrtf((float)n);
    for (int i = 0; i < n; i++) x[i] *= c;
}

/* The block-diagonal Hadamard of mechlab.quant.rht.hadamard: power-of-two blocks of n's binary expansion. */
static void hadamard(float *x, int n) {
    int off = 0;
    for (int b = 30; b >= 0; b--)
        if ((n >> b) & 1) {
            fwht(x + off, 1 << b);
            off += 1 << b;
        }
}

/* A group's first state starts in the previous group's bytes, so group g reads bytes [k·g − pb, k·g − pb + 8) of
 * its tile's stream (pb = ceil(L/8)): for g = 0 that starts before the stream, which is circular, and the last
 * groups read past its end (bits never used). Each tile-row is therefore copied once into rows of ``stride`` bytes:
 * the stream's last pb bytes, the stream, zeros; group g of tile j is then the 8 bytes at j·stride + k·g. */
static void pad_tiles(const uint8_t *tiles, int nt, int tb, int pb, int stride, uint8_t *out) {
    for (int j = 0; j < nt; j++) {
        uint8_t *o = out + (size_t)j * stride;
        const uint8_t *t = tiles + (size_t)j * tb;
        memcpy(o, t + tb - pb, pb);
        memcpy(o + pb, t, tb);
        memset(o + pb + tb, 0, stride - pb - tb);
    }
}

typedef struct {
    int L, k, pb, tb, stride;  /* state bits, bits per weight, prefix bytes, bytes per tile, padded tile bytes */
    int byte[8], shift[8];     /* per lane of a group: first byte of its 32-bit word, right shift */
    uint32_t mask;
} Layout;

static void layout(Layout *ly, int L, int k) {
    ly->L = L;
    ly->k = k;
    ly->pb = (L + 7) / 8;
    ly->tb = 32 * k;
    ly->stride = 32 * k + 16;
    ly->mask = (uint32_t)((1u << L) - 1);
    for (int l = 0; l < 8; l++) {
        int e = k * (l + 1) + 8 * ly->pb - L; /* window start, in bits from the group's first buffer byte */
        ly->byte[l] = e / 8;
        ly->shift[l] = 32 - L - e % 8;
    }
}

static inline int bytesum(uint32_t s) {
    uint32_t x = s * MAD_MUL + MAD_ADD;
    return (int)((x & 0xFF) + ((x >> 8) & 0xFF) + ((x >> 16) & 0xFF) + (x >> 24));
}

/* Scalar: the 8 byte sums of the group whose 8 bytes start at b. */
static inline void group_scalar(const Layout *ly, const uint8_t *b, int out[8]) {
    for (int l = 0; l < 8; l++) {
        const uint8_t *p = b + ly->byte[l];
        uint32_t be = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
        out[l] = bytesum((be >> ly->shift[l]) & ly->mask);
    }
}

#ifdef __AVX2__
typedef struct {
    __m256i shuf, shift, mask, mul, add, ones8, ones16;
} Consts;

static void consts(const Layout *ly, Consts *c) {
    int8_t sh[32];
    int32_t shifts[8];
    for (int l = 0; l < 8; l++) {
        for (int i = 0; i < 4; i++) sh[4 * l + i] = (int8_t)(ly->byte[l] + 3 - i); /* big-endian word, LE lanes */
        shifts[l] = ly->shift[l];
    }
    c->shuf = _mm256_loadu_si256((const __m256i *)sh);
    c->shift = _mm256_loadu_si256((const __m256i *)shifts);
    c->mask = _mm256_set1_epi32((int)ly->mask);
    c->mul = _mm256_set1_epi32((int)MAD_MUL);
    c->add = _mm256_set1_epi32((int)MAD_ADD);
    c->ones8 = _mm256_set1_epi8(1);
    c->ones16 = _mm256_set1_epi16(1);
}

/* The 8 byte sums of a group as floats. The shuffle indexes bytes 0..7 of each 128-bit half, which both hold the
 * broadcast 8 bytes. */
static inline __m256 group_avx2(const Consts *c, const uint8_t *bytes) {
    __m256i b = _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)bytes));
    __m256i w = _mm256_shuffle_epi8(b, c->shuf);
    __m256i s = _mm256_and_si256(_mm256_srlv_epi32(w, c->shift), c->mask);
    __m256i x = _mm256_add_epi32(_mm256_mullo_epi32(s, c->mul), c->add);
    __m256i p = _mm256_maddubs_epi16(x, c->ones8);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, c->ones16));
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
#define QMV_AVX512 1
typedef struct {
    __m512i shuf, shift, mask, mul, add, ones8, ones16;
} Consts512;

/* Lane w of 16 (a tile row) reads the big-endian word of its group (w / 8: k bytes further on) at byte[w % 8];
 * the indices stay inside the 16 loaded bytes because byte[7] = k and 2·k + 3 < 16 for k <= 6. */
static void consts512(const Layout *ly, Consts512 *c) {
    int8_t sh[64];
    int32_t shifts[16];
    for (int w = 0; w < 16; w++) {
        for (int i = 0; i < 4; i++) sh[4 * w + i] = (int8_t)(ly->byte[w % 8] + (w / 8) * ly->k + 3 - i);
        shifts[w] = ly->shift[w % 8];
    }
    c->shuf = _mm512_loadu_si512((const void *)sh);
    c->shift = _mm512_loadu_si512((const void *)shifts);
    c->mask = _mm512_set1_epi32((int)ly->mask);
    c->mul = _mm512_set1_epi32((int)MAD_MUL);
    c->add = _mm512_set1_epi32((int)MAD_ADD);
    c->ones8 = _mm512_set1_epi8(1);
    c->ones16 = _mm512_set1_epi16(1);
}

/* The 16 byte sums of a tile row (2·k bytes of codes starting at bytes) as floats. */
static inline __m512 row_avx512(const Consts512 *c, const uint8_t *bytes) {
    __m512i b = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)bytes));
    __m512i w = _mm512_shuffle_epi8(b, c->shuf);
    __m512i s = _mm512_and_si512(_mm512_srlv_epi32(w, c->shift), c->mask);
    __m512i x = _mm512_add_epi32(_mm512_mullo_epi32(s, c->mul), c->add);
#ifdef __AVX512VNNI__
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), x, c->ones8)); /* Σ 4 bytes × 1, one op */
#else
    __m512i p = _mm512_maddubs_epi16(x, c->ones8);
    return _mm512_cvtepi32_ps(_mm512_madd_epi16(p, c->ones16));
#endif
}
#endif

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* Calls row(ly, pad, R, nt, ctx) for every tile-row R of an m-row matrix, with pad holding that row's nt tiles
 * as pad_tiles lays them out; threads split the rows, each with its own buffer. Returns 0, or −1 when out of
 * memory. */
typedef void (*RowFn)(const Layout *ly, const uint8_t *pad, int R, int nt, void *ctx);

static int over_tile_rows(const Layout *ly, const uint8_t *packed, int m, int nt, int threads, RowFn row, void *ctx) {
    int rc = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        uint8_t *pad = malloc((size_t)nt * ly->stride);
        if (!pad) {
#pragma omp atomic write
            rc = -1;
        }
#pragma omp for schedule(static)
        for (int R = 0; R < m / 16; R++) {
            if (!pad) continue;
            pad_tiles(packed + (size_t)R * nt * ly->tb, nt, ly->tb, ly->pb, ly->stride, pad);
            row(ly, pad, R, nt, ctx);
        }
        free(pad);
    }
    return rc;
}

typedef struct {
    int m, n, B;
    const float *xr; /* rotated inputs (B, n) */
    float *acc;      /* (B, m) */
} MatvecRows;

/* acc[b * m + i] = Σ_j b_ij xr[b * n + j] for the 16 rows of tile-row R, B inputs. */
static void tile_row(const Layout *ly, const uint8_t *pad, int R, int nt, void *ctx) {
    const MatvecRows *mv = ctx;
    const int k = ly->k, st = ly->stride, m = mv->m, n = mv->n, B = mv->B;
    const float *xr = mv->xr;
    float *acc = mv->acc;
#ifdef QMV_AVX512
    if (2 * k + 3 < 16) {
        Consts512 c5;
        consts512(ly, &c5);
        if (B == 1) {
            for (int rq = 0; rq < 16; rq += 4) {
                __m512 a[4];
                for (int r = 0; r < 4; r++) a[r] = _mm512_setzero_ps();
                for (int j = 0; j < nt; j++) {
                    const uint8_t *tile = pad + (size_t)j * st + 2 * k * rq;
                    __m512 x = _mm512_loadu_ps(xr + 16 * j);
                    for (int r = 0; r < 4; r++) a[r] = _mm512_fmadd_ps(row_avx512(&c5, tile + 2 * k * r), x, a[r]);
                }
                for (int r = 0; r < 4; r++) acc[16 * R + rq + r] = _mm512_reduce_add_ps(a[r]);
            }
            return;
        }
        __m512 *a = aligned_alloc(64, sizeof(__m512) * (size_t)B);
        for (int r = 0; r < 16; r++) {
            for (int b = 0; b < B; b++) a[b] = _mm512_setzero_ps();
            for (int j = 0; j < nt; j++) {
                __m512 d = row_avx512(&c5, pad + (size_t)j * st + 2 * k * r);
                for (int b = 0; b < B; b++) a[b] = _mm512_fmadd_ps(d, _mm512_loadu_ps(xr + (size_t)b * n + 16 * j), a[b]);
            }
            for (int b = 0; b < B; b++) acc[(size_t)b * m + 16 * R + r] = _mm512_reduce_add_ps(a[b]);
        }
        free(a);
        return;
    }
#endif
#ifdef __AVX2__
    Consts c;
    consts(ly, &c);
    if (B == 1) {
        for (int rq = 0; rq < 16; rq += 4) {
            __m256 a[4][2];
            for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
            for (int j = 0; j < nt; j++) {
                const uint8_t *tile = pad + (size_t)j * st + 2 * k * rq;
                __m256 x0 = _mm256_loadu_ps(xr + 16 * j), x1 = _mm256_loadu_ps(xr + 16 * j + 8);
                for (int r = 0; r < 4; r++) {
                    a[r][0] = _mm256_fmadd_ps(group_avx2(&c, tile + 2 * k * r), x0, a[r][0]);
                    a[r][1] = _mm256_fmadd_ps(group_avx2(&c, tile + 2 * k * r + k), x1, a[r][1]);
                }
            }
            for (int r = 0; r < 4; r++) acc[16 * R + rq + r] = hsum(_mm256_add_ps(a[r][0], a[r][1]));
        }
        return;
    }
    __m256 *a = aligned_alloc(32, sizeof(__m256) * 2 * (size_t)B);
    for (int r = 0; r < 16; r++) {
        for (int i = 0; i < 2 * B; i++) a[i] = _mm256_setzero_ps();
        for (int j = 0; j < nt; j++) {
            const uint8_t *tile = pad + (size_t)j * st + 2 * k * r;
            __m256 d0 = group_avx2(&c, tile), d1 = group_avx2(&c, tile + k);
            for (int b = 0; b < B; b++) {
                const float *x = xr + (size_t)b * n + 16 * j;
                a[2 * b] = _mm256_fmadd_ps(d0, _mm256_loadu_ps(x), a[2 * b]);
                a[2 * b + 1] = _mm256_fmadd_ps(d1, _mm256_loadu_ps(x + 8), a[2 * b + 1]);
            }
        }
        for (int b = 0; b < B; b++) acc[(size_t)b * m + 16 * R + r] = hsum(_mm256_add_ps(a[2 * b], a[2 * b + 1]));
    }
    free(a);
#else
    int d[16];
    for (int r = 0; r < 16; r++) {
        for (int b = 0; b < B; b++) acc[(size_t)b * m + 16 * R + r] = 0.0f;
        for (int j = 0; j < nt; j++) {
            const uint8_t *tile = pad + (size_t)j * st + 2 * k * r;
            group_scalar(ly, tile, d);
            group_scalar(ly, tile + k, d + 8);
            for (int b = 0; b < B; b++) {
                const float *x = xr + (size_t)b * n + 16 * j;
                float s = 0.0f;
                for (int cc = 0; cc < 16; cc++) s += (float)d[cc] * x[cc];
                acc[(size_t)b * m + 16 * R + r] += s;
            }
        }
    }
#endif
}

/* y (B, m) = the layer applied to x (B, n). s_in / s_out: ±1 signs (NULL: no RHT). Returns 0, or −1 when out of
 * memory, −2 for shapes that are not whole tiles. */
int qmatvec_1mad(const float *x, int B, int m, int n, const uint8_t *packed, int L, int k, float alpha,
                 const float *s_in, const float *s_out, float *y, int threads) {
    if (m % 16 || n % 16) return -2;
    Layout ly;
    layout(&ly, L, k);
    const int nt = n / 16;
    float *xr = malloc(sizeof(float) * (size_t)B * n);
    float *xsum = malloc(sizeof(float) * (size_t)B);
    if (!xr || !xsum) {
        free(xr);
        free(xsum);
        return -1;
    }
    for (int b = 0; b < B; b++) {
        float *xb = xr + (size_t)b * n;
        const float *x0 = x + (size_t)b * n;
        if (s_in) {
            for (int j = 0; j < n; j++) xb[j] = x0[j] * s_in[j];
            hadamard(xb, n);
        } else {
            memcpy(xb, x0, sizeof(float) * n);
        }
        double s = 0.0;
        for (int j = 0; j < n; j++) s += xb[j];
        xsum[b] = (float)s;
    }
    MatvecRows mv = {m, n, B, xr, y};
    int rc = over_tile_rows(&ly, packed, m, nt, threads, tile_row, &mv);
    if (rc) {
        free(xr);
        free(xsum);
        return rc;
    }
    for (int b = 0; b < B; b++) {
        float *yb = y + (size_t)b * m;
        for (int i = 0; i < m; i++) yb[i] = alpha * (yb[i] - 510.0f * xsum[b]);
        if (s_out) {
            hadamard(yb, m);
            for (int i = 0; i < m; i++) yb[i] *= s_out[i];
        }
    }
    free(xr);
    free(xsum);
    return 0;
}

typedef struct {
    int n;
    float *w; /* (m, n) */
} DecodeRows;

/* The 16 rows of tile-row R of the decoded matrix. */
static void decode_row(const Layout *ly, const uint8_t *pad, int R, int nt, void *ctx) {
    const DecodeRows *dr = ctx;
    int d[8];
    for (int j = 0; j < nt; j++)
        for (int g = 0; g < 32; g++) {
            group_scalar(ly, pad + (size_t)j * ly->stride + ly->k * g, d);
            float *row = dr->w + (size_t)(16 * R + g / 2) * dr->n + 16 * j + 8 * (g % 2);
            for (int l = 0; l < 8; l++) row[l] = (float)(d[l] - 510);
        }
}

/* The rotated, unscaled weights: w[i * n + j] = bytesum − 510 of every weight (m, n), for the dense path. */
int decode_1mad(const uint8_t *packed, int m, int n, int L, int k, float *w, int threads) {
    if (m % 16 || n % 16) return -2;
    Layout ly;
    layout(&ly, L, k);
    DecodeRows dr = {n, w};
    return over_tile_rows(&ly, packed, m, n / 16, threads, decode_row, &dr);
}
