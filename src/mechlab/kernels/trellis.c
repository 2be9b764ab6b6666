/* Gather-free Viterbi over the bitshift trellis (see mechlab/quant/trellis.py for the maths).
 *
 * The recursion keeps only m_t[g], the best cost of reaching predecessor group g at step t (G = 2^(L-KV) floats):
 *     cost_t(x) = m_t[x >> KV] + |code(x) - w_t|^2                       (x's group is x >> KV)
 *     m_{t+1}[g] = min_p cost_t(p*G + g)                                 (the P = 2^KV predecessors of group g)
 * with m_0[g] = 0 (free start) or 0 only for g == start (tail-biting). Full cost vectors are never stored. One
 * step more than the sequence has (with its last weights) turns the choice of the last state into a choice of
 * group: argmin_g m_N[g], or g = end. The traceback then needs, for every step t and group g, the predecessor p
 * that won, and there are two ways to have it:
 *   - decisions (k = 2, V = 1 with AVX2, the common case): the step records the winner of every group as KV bits
 *     (G*KV/8 bytes) and m lives in two buffers that stay in cache (64 KB each at L = 16);
 *   - history (every other shape): the step only takes minima, m_t is kept for every t, and the traceback
 *     recomputes the P candidate costs of the chosen group with exactly the same float operations (fused
 *     multiply-adds in one order), so it agrees with the forward pass bit for bit. With P >= 8 an argmin in the
 *     step would cost more vector work than the history's memory traffic.
 * Ties pick the smallest predecessor index in both. viterbi_batch runs sequences in parallel with OpenMP;
 * per-thread work buffers persist between calls.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

typedef struct {
    int L, KV, V, S, G, P, B; /* B: bytes of one decision plane, ceil(G / 8) */
    const float *tab0, *tab1;
    const float *blk0, *blk1; /* AVX2 and G % 8 == 0: the tables blocked for the vector loops (see block_tables) */
    int decisions;            /* the decisions strategy runs (k = 2, V = 1 with AVX2) */
    uint8_t bit_of[8];        /* the bit of a decision byte that holds group g is bit_of[g & 7] */
} Trellis;

/* cost_t(x) given m_t and the step's weights w (V of them). */
static inline float cand(const Trellis *tr, int x, const float *m, const float *w) {
    float d0 = tr->tab0[x] - w[0];
    float c = fmaf(d0, d0, m[x >> tr->KV]);
    if (tr->V == 2) {
        float d1 = tr->tab1[x] - w[1];
        c = fmaf(d1, d1, c);
    }
    return c;
}

/* History strategy: m_next from m (both G floats; m readable 8 floats past its end) and the step's weights w. */
static void step(const Trellis *tr, const float *restrict m, float *restrict m_next, const float *w) {
    const int G = tr->G, P = tr->P, KV = tr->KV, V = tr->V;
    int g0 = 0;
#ifdef __AVX2__
    if (tr->blk0) {
        const __m256 w0 = _mm256_set1_ps(w[0]), w1 = _mm256_set1_ps(V == 2 ? w[1] : 0.0f);
        const __m256i idx = _mm256_setr_epi32(0, 1 / P, 2 / P, 3 / P, 4 / P, 5 / P, 6 / P, 7 / P);
        for (; g0 < G; g0 += 8) {
            __m256 best = _mm256_set1_ps(INFINITY);
            for (int p = 0; p < P; p++) {
                const int x0 = p * G + g0;
                /* the groups of states x0..x0+7: one group when P >= 8, else 8/P consecutive ones */
                __m256 mv = P >= 8 ? _mm256_broadcast_ss(m + (x0 >> KV))
                                   : _mm256_permutevar8x32_ps(_mm256_loadu_ps(m + (x0 >> KV)), idx);
                __m256 d0 = _mm256_sub_ps(_mm256_load_ps(tr->blk0 + (size_t)g0 * P + 8 * p), w0);
                __m256 c = _mm256_fmadd_ps(d0, d0, mv);
                if (V == 2) {
                    __m256 d1 = _mm256_sub_ps(_mm256_load_ps(tr->blk1 + (size_t)g0 * P + 8 * p), w1);
                    c = _mm256_fmadd_ps(d1, d1, c);
                }
                best = _mm256_min_ps(best, c); /* min(best, c) keeps best on ties: the smallest p wins */
            }
            _mm256_storeu_ps(m_next + g0, best);
        }
    }
#endif
    for (int g = g0; g < G; g++) {
        float best = INFINITY;
        for (int p = 0; p < P; p++) {
            float c = cand(tr, p * G + g, m, w);
            best = c < best ? c : best;
        }
        m_next[g] = best;
    }
}

#ifdef __AVX2__
/* Decisions strategy, k = 2 and V = 1 (P = 4). Eight states x0..x0+7 belong to two groups, so the generic loop
 * spends a shuffle per candidate on spreading m. Here the blocked table holds every 8 entries in "lane order",
 * lane i holding state x0 + (i >> 1) + 4 * (i & 1): the two groups then alternate across lanes and one 8-byte
 * broadcast load spreads them. The argmin is a tree (min of pairs, then of the pair minima) whose comparisons are
 * the two decision bits; one permute per 8 groups puts the minima back in group order, and the decision bytes stay
 * in lane order (Trellis.bit_of). */
static inline __m256 cand8(const float *table, const double *m_pair, __m256 w0) {
    const __m256 d = _mm256_sub_ps(_mm256_load_ps(table), w0);
    return _mm256_fmadd_ps(d, d, _mm256_castpd_ps(_mm256_broadcast_sd(m_pair)));
}

static void step4(const Trellis *tr, const float *restrict m, float *restrict m_next, const float *w,
                  uint8_t *restrict dec) {
    const int G = tr->G, Q = G / 4;
    const __m256 w0 = _mm256_set1_ps(w[0]);
    const __m256i to_groups = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    /* predecessor p of the block of groups g0 = 8i..8i+7: blocked table entries 32i + 8p.., m entries p*Q + 2i, +1 */
    const float *blk = tr->blk0;
    const double *m0 = (const double *)m, *m1 = (const double *)(m + Q), *m2 = (const double *)(m + 2 * Q),
                 *m3 = (const double *)(m + 3 * Q);
    uint8_t *restrict lo_bits = dec, *restrict hi_bits = dec + tr->B;
    for (int i = 0; i < G / 8; i++) {
        const float *t = blk + 32 * i;
        const __m256 c0 = cand8(t, m0 + i, w0), c1 = cand8(t + 8, m1 + i, w0), c2 = cand8(t + 16, m2 + i, w0),
                     c3 = cand8(t + 24, m3 + i, w0);
        const __m256 m01 = _mm256_min_ps(c1, c0), m23 = _mm256_min_ps(c3, c2);
        const __m256 hi = _mm256_cmp_ps(m23, m01, _CMP_LT_OQ); /* strict: ties keep the smaller index */
        const __m256 lo = _mm256_blendv_ps(_mm256_cmp_ps(c1, c0, _CMP_LT_OQ), _mm256_cmp_ps(c3, c2, _CMP_LT_OQ), hi);
        _mm256_storeu_ps(m_next + 8 * i, _mm256_permutevar8x32_ps(_mm256_min_ps(m23, m01), to_groups));
        lo_bits[i] = (uint8_t)_mm256_movemask_ps(lo); /* in lane order: see bit_of */
        hi_bits[i] = (uint8_t)_mm256_movemask_ps(hi);
    }
}
#endif

/* Per-thread work buffer, grown as needed and kept between calls (no page faults on every call). */
static _Thread_local uint8_t *work = NULL;
static _Thread_local size_t work_len = 0;

static uint8_t *work_buffer(size_t n) {
    if (n > work_len) {
        free(work);
        work = aligned_alloc(64, (n + 63) / 64 * 64);
        work_len = work ? n : 0;
    }
    return work;
}

/* One sequence of N steps: w (N*V), start/end: -1 = free. Writes path (N states). Returns 0 or -1 (memory). */
static int viterbi_one(const Trellis *tr, const float *w, int N, int64_t start, int64_t end, int64_t *path) {
    const int G = tr->G, P = tr->P, V = tr->V;
    const int decisions = tr->decisions;
    /* decisions: two m buffers + the decisions of steps 1..N; history: m_0..m_N */
    const size_t m_len = (size_t)G + 16, plane_bytes = (size_t)tr->KV * tr->B;
    const size_t bytes = decisions ? sizeof(float) * 2 * m_len + (size_t)(N + 1) * plane_bytes
                                   : sizeof(float) * (N + 1) * m_len;
    uint8_t *buf = work_buffer(bytes);
    if (!buf) return -1;
    float *m = (float *)buf, *m_next = m + m_len;
    uint8_t *dec = buf + sizeof(float) * 2 * m_len; /* decisions of step t (1 <= t <= N) at dec + t * plane_bytes */
    for (size_t g = 0; g < m_len; g++) {
        m[g] = (start < 0 || (int64_t)g == start) ? 0.0f : INFINITY;
        m_next[g] = INFINITY; /* the padding is read (and ignored) by the vector loads */
    }
    for (int t = 1; t <= N; t++) {
        const float *wt = w + (size_t)(t - 1) * V;
        if (decisions) {
#ifdef __AVX2__
            step4(tr, m, m_next, wt, dec + (size_t)t * plane_bytes);
#endif
            float *tmp = m; m = m_next; m_next = tmp;
        } else {
            step(tr, m, m_next, wt);
            m = m_next;
            m_next += m_len;
            if (t < N) for (int i = G; i < (int)m_len; i++) m_next[i] = INFINITY;
        }
    }
    int g = (int)end;
    if (end < 0) {
        g = 0;
        for (int i = 1; i < G; i++) g = m[i] < m[g] ? i : g;
    }
    for (int t = N; t > 0; t--) {
        int p = 0;
        if (decisions) {
            const uint8_t *d = dec + (size_t)t * plane_bytes;
            for (int b = 0; b < tr->KV; b++) p |= ((d[b * tr->B + (g >> 3)] >> tr->bit_of[g & 7]) & 1) << b;
        } else {
            const float *m_prev = (const float *)buf + (size_t)(t - 1) * m_len, *w_prev = w + (size_t)(t - 1) * V;
            float bc = INFINITY;
            for (int q = 0; q < P; q++) {
                const float c = cand(tr, q * G + g, m_prev, w_prev);
                if (q == 0 || c < bc) { bc = c; p = q; }
            }
        }
        path[t - 1] = (int64_t)p * G + g;
        g = (int)(path[t - 1] >> tr->KV);
    }
    return 0;
}

#ifdef __AVX2__
/* The vector loops take the candidates of 8 groups g0..g0+7 from all P predecessors p at once. Blocked tables put
 * those P*8 entries next to each other (blk[g0*P + 8*p + i] = tab[p*G + g0 + i]), so a step reads its table as one
 * stream instead of P streams G floats apart (which collide in the L1 sets when G*4 bytes is a multiple of 4 KB).
 * For the decisions strategy the 8 entries are in step4's lane order. Returns 0, or -1 out of memory. */
static int block_tables(Trellis *tr) {
    const int G = tr->G, P = tr->P;
    if (tr->decisions)
        for (int i = 0; i < 8; i++) tr->bit_of[(i >> 1) + 4 * (i & 1)] = (uint8_t)i;
    for (int v = 0; v < tr->V; v++) {
        const float *tab = v ? tr->tab1 : tr->tab0;
        float *blk = aligned_alloc(64, sizeof(float) * tr->S);
        if (!blk) return -1;
        for (int g0 = 0; g0 < G; g0 += 8)
            for (int p = 0; p < P; p++)
                for (int i = 0; i < 8; i++)
                    blk[(size_t)g0 * P + 8 * p + i] = tab[p * G + g0 + (tr->decisions ? (i >> 1) + 4 * (i & 1) : i)];
        if (v) tr->blk1 = blk; else tr->blk0 = blk;
    }
    return 0;
}
#endif

/* B sequences of N steps: w (B*N*V), start/end (B) or NULL, path (B*N), on `threads` OpenMP threads.
 * Returns 0, -1 out of memory, -2 bad arguments. */
int viterbi_batch(const float *w, int B, int N, int V, const float *tab0, const float *tab1, int L, int KV,
                  const int64_t *start, const int64_t *end, int64_t *path, int threads) {
    if (KV < 1 || KV > 8 || KV >= L || L > 24 || (V != 1 && V != 2) || N < 1) return -2;
    const int G = (1 << L) >> KV, S = 1 << L;
    Trellis tr = {L, KV, V, S, G, 1 << KV, (G + 7) / 8, tab0, tab1, NULL, NULL, 0, {0, 1, 2, 3, 4, 5, 6, 7}};
    int failed = 0;
#ifdef __AVX2__
    if (G % 8 == 0) {
        tr.decisions = KV == 2 && V == 1;
        failed = block_tables(&tr);
    }
#endif
    if (!failed) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : 1)
        for (int b = 0; b < B; b++) {
            if (viterbi_one(&tr, w + (size_t)b * N * V, N, start ? start[b] : -1, end ? end[b] : -1,
                            path + (size_t)b * N))
#pragma omp atomic write
                failed = 1;
        }
    }
    free((void *)tr.blk0);
    free((void *)tr.blk1);
    return failed ? -1 : 0;
}
