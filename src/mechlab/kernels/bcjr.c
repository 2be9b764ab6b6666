/* Soft trellis decoding at a temperature (BCJR) with its exact gradient; see mechlab/quant/bcjr.py for the maths.
 *
 * Messages are kept per group, never per state. With x's predecessor group x >> KV and successor group
 * x & (G-1) (G = 2^(L-KV), P = 2^KV):
 *     log alpha_t(x) = lg_t[x >> KV] + ell_t(x),      lg_{t+1}[g] = LSE_p log alpha_t(p*G + g)
 *     log beta_t(x)  = lb_t[x & (G-1)],               lb_{t-1}[g] = LSE_c (ell_t(g*P + c) + lb_t[(g*P + c) & (G-1)])
 * with ell_t(x) = -|code(x) - w_t|^2 / T. The start constraint (tail-biting) is lg_0[g] = NEG for g != start,
 * the end constraint lb_{N-1}[g] = NEG for g != end. Every message is renormalised (its maximum subtracted) at
 * every step; log-sum-exps subtract their own maximum, so each exponent is <= 0.
 * The gradient of <grad, w_hat> follows from the expected prefix a_t(x) = inc_t[x >> KV] + u_t(x) and suffix
 * b_t(x) = bs_t[x & (G-1)] of G(path) = sum_t grad_t . code(s_t) given the state (u_t(x) = grad_t . code(x)):
 *     dloss/dw_t = (2/T) * sum_x gamma_t(x) (code(x) - w_hat_t) (a_t(x) + b_t(x)).
 * Constants added to inc or bs cancel in that sum, so both are centred every step (float32 accuracy).
 * Forward of the autograd Function: grad == NULL, out = w_hat. Backward: out = dloss/dw.
 * Per thread: lg (and inc) for every step, N * G floats each; the rest is O(2^L).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NEG (-1e30f)

typedef struct {
    int KV, V, S, G, P, N;
    const float *tab0, *tab1;
    float inv_t;
} Trellis;

/* e^x for x <= 0 (Cody-Waite reduction, Cephes polynomial, ~2 ulp); exactly 0 below -87. Branch-free and without
 * floorf (which does not vectorise without -ffast-math), so the loops that call it vectorise. */
static inline float exp_neg(float x) {
    float xc = (x > -87.0f ? x : -87.0f);
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
    float n = (xc * 1.44269504088896341f + round_magic) - round_magic;
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale * (float)(x >= -87.0f);
}

/* log x for a positive normal float (Cephes logf, ~2 ulp), branch-free. */
static inline float log_pos(float x) {
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    float e = (float)(((bits >> 23) & 0xff) - 126);
    bits = (bits & 0x007fffff) | 0x3f000000; /* mantissa in [0.5, 1) */
    float m;
    memcpy(&m, &bits, sizeof m);
    float small = (float)(m < 0.707106781186547524f);
    e -= small;
    float f = m + m * small - 1.0f;
    float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    return f + y + 0.693359375f * e;
}

/* tab1 is all zeros for V = 1 and the step's second weight / gradient is read as 0, so the hot loops have no
 * branch on V. */
static inline float ell(const Trellis *tr, int x, float w0, float w1) {
    float d0 = tr->tab0[x] - w0, d1 = tr->tab1[x] - w1;
    return -(d0 * d0 + d1 * d1) * tr->inv_t;
}

static inline float dot(const Trellis *tr, int x, float g0, float g1) {
    return tr->tab0[x] * g0 + tr->tab1[x] * g1;
}

static float max_of(const float *v, int n) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

static void centre(float *v, int n) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += v[i];
    float mean = s / n;
    for (int i = 0; i < n; i++) v[i] -= mean;
}

typedef struct {
    float *lg, *inc;          /* N * G each */
    float *cur, *aux, *e;     /* S each */
    float *m, *tot, *num;     /* G each */
    float *lb, *bs, *lb2, *bs2;
} Work;

static int work_alloc(Work *wk, const Trellis *tr, int with_grad) {
    size_t NG = (size_t)tr->N * tr->G, S = tr->S, G = tr->G;
    wk->lg = malloc(sizeof(float) * NG);
    wk->inc = with_grad ? malloc(sizeof(float) * NG) : NULL;
    wk->cur = malloc(sizeof(float) * S);
    wk->aux = malloc(sizeof(float) * S);
    wk->e = malloc(sizeof(float) * S);
    wk->m = malloc(sizeof(float) * 7 * G);
    if (!wk->m) return 1;
    wk->tot = wk->m + G;
    wk->num = wk->m + 2 * G;
    wk->lb = wk->m + 3 * G;
    wk->bs = wk->m + 4 * G;
    wk->lb2 = wk->m + 5 * G;
    wk->bs2 = wk->m + 6 * G;
    return !wk->lg || (with_grad && !wk->inc) || !wk->cur || !wk->aux || !wk->e;
}

static void work_free(Work *wk) {
    free(wk->lg);
    free(wk->inc);
    free(wk->cur);
    free(wk->aux);
    free(wk->e);
    free(wk->m);
}

/* Forward sweep: lg_t (and inc_t) for every t. */
static void forward(const Trellis *tr, Work *wk, const float *w, int64_t start, const float *grad) {
    const int S = tr->S, G = tr->G, P = tr->P, KV = tr->KV, V = tr->V, N = tr->N;
    float *lg = wk->lg, *inc = wk->inc, *cur = wk->cur, *acur = wk->aux;
    for (int g = 0; g < G; g++) lg[g] = (start < 0 || g == start) ? 0.0f : NEG;
    if (grad) memset(inc, 0, sizeof(float) * G);
    for (int t = 0; t + 1 < N; t++) {
        const float *lgt = lg + (size_t)t * G;
        const float w0 = w[(size_t)t * V], w1 = V == 2 ? w[(size_t)t * V + 1] : 0.0f;
        float *lgn = lg + (size_t)(t + 1) * G;
        for (int x = 0; x < S; x++) cur[x] = lgt[x >> KV] + ell(tr, x, w0, w1);
        float *m = wk->m, *tot = wk->tot, *num = wk->num;
        for (int g = 0; g < G; g++) m[g] = cur[g];
        for (int p = 1; p < P; p++)
            for (int g = 0; g < G; g++) m[g] = cur[p * G + g] > m[g] ? cur[p * G + g] : m[g];
        memset(tot, 0, sizeof(float) * G);
        if (grad) {
            const float *inct = inc + (size_t)t * G;
            const float g0 = grad[(size_t)t * V], g1 = V == 2 ? grad[(size_t)t * V + 1] : 0.0f;
            for (int x = 0; x < S; x++) acur[x] = inct[x >> KV] + dot(tr, x, g0, g1);
            memset(num, 0, sizeof(float) * G);
            for (int p = 0; p < P; p++)
                for (int g = 0; g < G; g++) {
                    float e = exp_neg(cur[p * G + g] - m[g]);
                    tot[g] += e;
                    num[g] += e * acur[p * G + g];
                }
            float *incn = inc + (size_t)(t + 1) * G;
            for (int g = 0; g < G; g++) incn[g] = num[g] / tot[g];
            centre(incn, G);
        } else {
            for (int p = 0; p < P; p++)
                for (int g = 0; g < G; g++) tot[g] += exp_neg(cur[p * G + g] - m[g]);
        }
        for (int g = 0; g < G; g++) lgn[g] = m[g] + log_pos(tot[g]);
        float mx = max_of(lgn, G);
        for (int g = 0; g < G; g++) lgn[g] -= mx;
    }
}

/* Backward messages: for each group g of the P consecutive states g*P + c, lse[g] = LSE_c y and (with val)
 * mean[g] = sum_c softmax_c(y) * val. m, tot, num: G floats of scratch. */
static inline void consecutive_groups(const float *restrict y, const float *restrict val, int G, const int P,
                                      float *restrict lse, float *restrict mean, float *restrict m,
                                      float *restrict tot, float *restrict num) {
    for (int g = 0; g < G; g++) m[g] = y[g * P];
    for (int c = 1; c < P; c++)
        for (int g = 0; g < G; g++) m[g] = y[g * P + c] > m[g] ? y[g * P + c] : m[g];
    for (int g = 0; g < G; g++) tot[g] = num[g] = 0.0f;
    for (int c = 0; c < P; c++) {
        if (val)
            for (int g = 0; g < G; g++) {
                float ex = exp_neg(y[g * P + c] - m[g]);
                tot[g] += ex;
                num[g] += ex * val[g * P + c];
            }
        else
            for (int g = 0; g < G; g++) tot[g] += exp_neg(y[g * P + c] - m[g]);
    }
    for (int g = 0; g < G; g++) lse[g] = m[g] + log_pos(tot[g]);
    if (val)
        for (int g = 0; g < G; g++) mean[g] = num[g] / tot[g];
}

/* Backward sweep: marginals at every step -> w_hat (grad == NULL) or dloss/dw. */
static void backward(const Trellis *tr, Work *wk, const float *w, int64_t end, const float *grad, float *out) {
    const int S = tr->S, G = tr->G, P = tr->P, KV = tr->KV, V = tr->V, N = tr->N;
    float *y = wk->cur, *z = wk->aux, *e = wk->e;
    float *lb = wk->lb, *bs = wk->bs, *lb2 = wk->lb2, *bs2 = wk->bs2;
    for (int g = 0; g < G; g++) lb[g] = (end < 0 || g == end) ? 0.0f : NEG;
    memset(bs, 0, sizeof(float) * G);
    for (int t = N - 1; t >= 0; t--) {
        const float *lgt = wk->lg + (size_t)t * G;
        const float w0 = w[(size_t)t * V], w1 = V == 2 ? w[(size_t)t * V + 1] : 0.0f;
        const float g0 = grad ? grad[(size_t)t * V] : 0.0f, g1 = grad && V == 2 ? grad[(size_t)t * V + 1] : 0.0f;
        /* y = ell_t + log beta_t; z = log alpha_t + log beta_t */
        for (int x = 0; x < S; x++) y[x] = ell(tr, x, w0, w1) + lb[x & (G - 1)];
        for (int x = 0; x < S; x++) z[x] = lgt[x >> KV] + y[x];
        float mz = max_of(z, S);
        float zs = 0, s0 = 0, s1 = 0;
#pragma omp simd reduction(+ : zs, s0, s1)
        for (int x = 0; x < S; x++) {
            float gm = exp_neg(z[x] - mz);
            e[x] = gm;
            zs += gm;
            s0 += gm * tr->tab0[x];
            s1 += gm * tr->tab1[x];
        }
        float what0 = s0 / zs, what1 = s1 / zs;
        float *ot = out + (size_t)t * V;
        if (!grad) {
            ot[0] = what0;
            if (V == 2) ot[1] = what1;
        } else {
            const float *inct = wk->inc + (size_t)t * G;
            float c0 = 0, c1 = 0, cs = 0;
#pragma omp simd reduction(+ : c0, c1, cs)
            for (int x = 0; x < S; x++) {
                float cond = e[x] * (inct[x >> KV] + dot(tr, x, g0, g1) + bs[x & (G - 1)]);
                cs += cond;
                c0 += cond * tr->tab0[x];
                c1 += cond * tr->tab1[x];
            }
            float k = 2.0f * tr->inv_t / zs;
            ot[0] = k * (c0 - what0 * cs);
            if (V == 2) ot[1] = k * (c1 - what1 * cs);
        }
        if (t == 0) break;
        /* messages to step t-1 over the groups of P consecutive states g*P + c */
        if (grad)
            for (int x = 0; x < S; x++) e[x] = dot(tr, x, g0, g1) + bs[x & (G - 1)];
        switch (P) { /* a compile-time group size lets the compiler vectorise the strided loads */
        case 2: consecutive_groups(y, grad ? e : NULL, G, 2, lb2, bs2, wk->m, wk->tot, wk->num); break;
        case 4: consecutive_groups(y, grad ? e : NULL, G, 4, lb2, bs2, wk->m, wk->tot, wk->num); break;
        case 16: consecutive_groups(y, grad ? e : NULL, G, 16, lb2, bs2, wk->m, wk->tot, wk->num); break;
        default: consecutive_groups(y, grad ? e : NULL, G, P, lb2, bs2, wk->m, wk->tot, wk->num);
        }
        float mx = max_of(lb2, G);
        for (int g = 0; g < G; g++) lb[g] = lb2[g] - mx;
        if (grad) {
            centre(bs2, G);
            memcpy(bs, bs2, sizeof(float) * G);
        }
    }
}

/* w (B, N, V), tab0/tab1 (S,), start/end (B,) int64 or NULL, grad (B, N, V) or NULL, out (B, N, V).
 * Returns 0, or 1 when a work buffer could not be allocated. */
int bcjr_batch(const float *w, int B, int N, int V, const float *tab0, const float *tab1, int L, int KV, float T,
               const int64_t *start, const int64_t *end, const float *grad, float *out, int threads) {
    Trellis tr = {KV, V, 1 << L, 1 << (L - KV), 1 << KV, N, tab0, tab1, 1.0f / T};
    int failed = 0;
#pragma omp parallel num_threads(threads > 0 ? threads : 1)
    {
        Work wk;
        if (work_alloc(&wk, &tr, grad != NULL)) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) { /* every thread sees the same flag after the barrier: all or none enter the loop */
#pragma omp for schedule(dynamic, 1)
            for (int b = 0; b < B; b++) {
                const float *wb = w + (size_t)b * N * V;
                const float *gb = grad ? grad + (size_t)b * N * V : NULL;
                forward(&tr, &wk, wb, start ? start[b] : -1, gb);
                backward(&tr, &wk, wb, end ? end[b] : -1, gb, out + (size_t)b * N * V);
            }
        }
        work_free(&wk);
    }
    return failed;
}
