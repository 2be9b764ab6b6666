/* Gather-free Viterbi over the bitshift trellis (see mechlab/quant/trellis.py for the maths).
 *
 * The recursion keeps only m_t[g], the best cost of reaching predecessor group g at step t (G = 2^(L-KV) floats):
 *     cost_t(x) = m_t[x >> KV] + |code(x) - w_t|^2                       (x's group is x >> KV)
 *     m_{t+1}[g] = min_p cost_t(p*G + g)                                 (the P = 2^KV predecessors of group g)
 * with m_0[g] = 0 (free start) or 0 only for g == start (tail-biting). Full cost vectors are never stored: a
 * step reads m_t (G floats) and the code table and writes m_{t+1}, so the working set is a quarter of the cost
 * vector plus the table. The traceback recomputes the P candidate costs of the chosen group with exactly the
 * same float operations (fused multiply-adds in one order), so it agrees with the forward pass bit for bit.
 * Ties pick the smallest predecessor index. The hot loop has an AVX2 path and a portable one; viterbi_batch runs
 * sequences in parallel with OpenMP. Per-thread work buffers persist between calls.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

typedef struct {
    int L, KV, V, S, G, P;
    const float *tab0, *tab1;
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

/* m_next from m (both G floats; m readable 8 floats past its end) and the weights w of the step of m. */
static void step(const Trellis *tr, const float *restrict m, float *restrict m_next, const float *w) {
    const int G = tr->G, P = tr->P, KV = tr->KV, V = tr->V;
    int g0 = 0;
#ifdef __AVX2__
    if (G % 8 == 0) {
        const __m256 w0 = _mm256_set1_ps(w[0]), w1 = _mm256_set1_ps(V == 2 ? w[1] : 0.0f);
        const __m256i idx = _mm256_setr_epi32(0, 1 / P, 2 / P, 3 / P, 4 / P, 5 / P, 6 / P, 7 / P);
        for (; g0 < G; g0 += 8) {
            __m256 best = _mm256_set1_ps(INFINITY);
            for (int p = 0; p < P; p++) {
                const int x0 = p * G + g0;
                /* the groups of states x0..x0+7: one group when P >= 8, else 8/P consecutive ones */
                __m256 mv = P >= 8 ? _mm256_broadcast_ss(m + (x0 >> KV))
                                   : _mm256_permutevar8x32_ps(_mm256_loadu_ps(m + (x0 >> KV)), idx);
                __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(tr->tab0 + x0), w0);
                __m256 c = _mm256_fmadd_ps(d0, d0, mv);
                if (V == 2) {
                    __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(tr->tab1 + x0), w1);
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

/* Per-thread work buffer, grown as needed and kept between calls (no page faults on every call). */
static _Thread_local float *work = NULL;
static _Thread_local size_t work_len = 0;

static float *work_buffer(size_t n) {
    if (n > work_len) {
        free(work);
        work = malloc(sizeof(float) * n);
        work_len = work ? n : 0;
    }
    return work;
}

/* One sequence of N steps: w (N*V), start/end: -1 = free. Writes path (N states). Returns 0 or -1 (memory). */
static int viterbi_one(const Trellis *tr, const float *w, int N, int64_t start, int64_t end, int64_t *path) {
    const int S = tr->S, G = tr->G, P = tr->P, V = tr->V;
    float *m = work_buffer((size_t)N * G + 8);
    if (!m) return -1;
    for (int g = 0; g < G; g++) m[g] = (start < 0 || g == start) ? 0.0f : INFINITY;
    for (int t = 1; t < N; t++) step(tr, m + (size_t)(t - 1) * G, m + (size_t)t * G, w + (size_t)(t - 1) * V);
    const float *m_last = m + (size_t)(N - 1) * G, *w_last = w + (size_t)(N - 1) * V;
    int64_t s = -1;
    float best = INFINITY;
    for (int x = 0; x < S; x++) {
        if (end >= 0 && (x & (G - 1)) != end) continue;
        float c = cand(tr, x, m_last, w_last);
        if (s < 0 || c < best) { best = c; s = x; }
    }
    for (int t = N - 1; t > 0; t--) {
        path[t] = s;
        const int g = (int)(s >> tr->KV);
        const float *m_prev = m + (size_t)(t - 1) * G, *w_prev = w + (size_t)(t - 1) * V;
        int64_t arg = g;
        float bc = INFINITY;
        for (int p = 0; p < P; p++) {
            float c = cand(tr, p * G + g, m_prev, w_prev);
            if (p == 0 || c < bc) { bc = c; arg = (int64_t)p * G + g; }
        }
        s = arg;
    }
    path[0] = s;
    return 0;
}

/* B sequences of N steps: w (B*N*V), start/end (B) or NULL, path (B*N), on `threads` OpenMP threads.
 * Returns 0, -1 out of memory, -2 bad arguments. */
int viterbi_batch(const float *w, int B, int N, int V, const float *tab0, const float *tab1, int L, int KV,
                  const int64_t *start, const int64_t *end, int64_t *path, int threads) {
    if (KV < 1 || KV > 8 || KV >= L || L > 24 || (V != 1 && V != 2) || N < 1) return -2;
    Trellis tr = {L, KV, V, 1 << L, (1 << L) >> KV, 1 << KV, tab0, tab1};
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : 1)
    for (int b = 0; b < B; b++) {
        if (viterbi_one(&tr, w + (size_t)b * N * V, N, start ? start[b] : -1, end ? end[b] : -1, path + (size_t)b * N))
#pragma omp atomic write
            failed = 1;
    }
    return failed ? -1 : 0;
}
