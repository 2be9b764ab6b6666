/* Gather-free Viterbi over the bitshift trellis (see mechlab/quant/trellis.py for the maths).
 *
 * Forward: m_t[g] = min_p cost_{t-1}[p*G + g]  (the predecessors of states g*P..g*P+P-1 form one group),
 *          cost_t[s] = m_t[s >> KV] + d_t(s),   d_t(s) = |code(s)|^2 - 2 w_t.code(s)  (|w_t|^2 dropped).
 * Only m_t is kept per step (G floats); the traceback recomputes the P candidate costs of the chosen group with
 * the same float operations, so no argmin runs in the hot loop. Ties pick the smallest predecessor index, as
 * the PyTorch reference does. The hot loop has an AVX2 path (8 groups per iteration) and a portable one.
 * viterbi_batch runs sequences in parallel with OpenMP.
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
    const float *tab0, *tab1, *tabsq;
} Trellis;

/* d_t(s) + base, in exactly one order of float operations (the traceback relies on it). */
static inline float dist(const Trellis *tr, int s, float a0, float a1, float base) {
    float d = fmaf(a0, tr->tab0[s], tr->tabsq[s]);
    if (tr->V == 2) d = fmaf(a1, tr->tab1[s], d);
    return base + d;
}

static void step(const Trellis *tr, const float *restrict cost, float *restrict next, float *restrict m, float a0,
                 float a1) {
    const int G = tr->G, P = tr->P, V = tr->V;
    const float *restrict tab0 = tr->tab0, *restrict tab1 = tr->tab1, *restrict tabsq = tr->tabsq;
    int g0 = 0;
#ifdef __AVX2__
    if (G >= 8) {
        const __m256 va0 = _mm256_set1_ps(a0), va1 = _mm256_set1_ps(a1);
        for (; g0 + 8 <= G; g0 += 8) {
            __m256 mv = _mm256_loadu_ps(cost + g0);
            for (int p = 1; p < P; p++) mv = _mm256_min_ps(mv, _mm256_loadu_ps(cost + p * G + g0));
            _mm256_storeu_ps(m + g0, mv);
            const int s0 = g0 * P;
            for (int v8 = 0; v8 < P; v8++) { /* 8 vectors of 8 states: the states of groups g0..g0+7 */
                __m256 mrep;
                if (P >= 8) {
                    mrep = _mm256_set1_ps(m[g0 + v8 * 8 / P]);
                } else {
                    int base = v8 * 8 / P;
                    __m256i idx = _mm256_setr_epi32(base, base + 1 / P, base + 2 / P, base + 3 / P, base + 4 / P,
                                                    base + 5 / P, base + 6 / P, base + 7 / P);
                    mrep = _mm256_permutevar8x32_ps(mv, idx);
                }
                const int s = s0 + v8 * 8;
                __m256 d = _mm256_fmadd_ps(va0, _mm256_loadu_ps(tab0 + s), _mm256_loadu_ps(tabsq + s));
                if (V == 2) d = _mm256_fmadd_ps(va1, _mm256_loadu_ps(tab1 + s), d);
                _mm256_storeu_ps(next + s, _mm256_add_ps(mrep, d));
            }
        }
    }
#endif
    for (int g = g0; g < G; g++) {
        float best = cost[g];
        for (int p = 1; p < P; p++) best = fminf(best, cost[p * G + g]);
        m[g] = best;
        for (int c = 0; c < P; c++) next[g * P + c] = dist(tr, g * P + c, a0, a1, best);
    }
}

static inline float cost0(const Trellis *tr, int s, const float *w, int64_t start) {
    if (start >= 0 && (s >> tr->KV) != start) return INFINITY;
    return dist(tr, s, -2.0f * w[0], tr->V == 2 ? -2.0f * w[1] : 0.0f, 0.0f);
}

/* w: N*V weights; start/end: -1 = free. Work: cost, next (S floats), m (N*G floats). Writes path (N states). */
static void viterbi_one(const Trellis *tr, const float *w, int N, int64_t start, int64_t end, float *cost, float *next,
                        float *m, int64_t *path) {
    const int S = tr->S, G = tr->G, P = tr->P, V = tr->V;
    for (int s = 0; s < S; s++) cost[s] = cost0(tr, s, w, start);
    for (int t = 1; t < N; t++) {
        step(tr, cost, next, m + (size_t)t * G, -2.0f * w[t * V], V == 2 ? -2.0f * w[t * V + 1] : 0.0f);
        float *tmp = cost; cost = next; next = tmp;
    }
    int64_t s = -1;
    float best = INFINITY;
    for (int q = 0; q < S; q++) {
        if (end >= 0 && (q & (G - 1)) != end) continue;
        if (s < 0 || cost[q] < best) { best = cost[q]; s = q; }
    }
    for (int t = N - 1; t > 0; t--) {
        path[t] = s;
        const int g = (int)(s >> tr->KV);
        int64_t arg = g;
        float bc = INFINITY;
        for (int p = 0; p < P; p++) {
            const int q = p * G + g;
            float c = t - 1 == 0 ? cost0(tr, q, w, start)
                                 : dist(tr, q, -2.0f * w[(t - 1) * V], V == 2 ? -2.0f * w[(t - 1) * V + 1] : 0.0f,
                                        m[(size_t)(t - 1) * G + (q >> tr->KV)]);
            if (p == 0 || c < bc) { bc = c; arg = q; }
        }
        s = arg;
    }
    path[0] = s;
}

/* B sequences of N steps: w (B*N*V), start/end (B) or NULL, path (B*N), on `threads` OpenMP threads.
 * Returns 0, -1 out of memory, -2 bad arguments. */
int viterbi_batch(const float *w, int B, int N, int V, const float *tab0, const float *tab1, const float *tabsq,
                  int L, int KV, const int64_t *start, const int64_t *end, int64_t *path, int threads) {
    if (KV < 1 || KV > 8 || KV >= L || L > 24 || (V != 1 && V != 2)) return -2;
    Trellis tr = {L, KV, V, 1 << L, (1 << L) >> KV, 1 << KV, tab0, tab1, tabsq};
    int failed = 0;
#pragma omp parallel num_threads(threads > 0 ? threads : 1)
    {
        float *cost = malloc(sizeof(float) * tr.S), *next = malloc(sizeof(float) * tr.S);
        float *m = malloc(sizeof(float) * (size_t)N * tr.G);
        if (!cost || !next || !m) {
#pragma omp atomic write
            failed = 1;
        } else {
#pragma omp for schedule(dynamic, 1)
            for (int b = 0; b < B; b++)
                viterbi_one(&tr, w + (size_t)b * N * V, N, start ? start[b] : -1, end ? end[b] : -1, cost, next, m,
                            path + (size_t)b * N);
        }
        free(cost); free(next); free(m);
    }
    return failed ? -1 : 0;
}
