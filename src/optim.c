/* optim.c: SGD (momentum, Nesterov, weight decay) and Adam with PyTorch's semantics, over the network's one
 * contiguous parameter buffer; and the multi-step and cosine learning-rate schedules. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>

struct ee_optim_state {
    ee_optim opt;
    size_t n;     /* parameters */
    float *buf;   /* SGD: momentum (n); Adam: m then v (2n) */
    int64_t steps;
};

ee_status ee_optim_state_new(ee_ctx *ctx, const ee_net *net, const ee_optim *opt, ee_optim_state **out) {
    *out = NULL;
    if (!(opt->lr >= 0) || !(opt->momentum >= 0 && opt->momentum < 1) || !(opt->weight_decay >= 0))
        return ee_fail(ctx, EE_ERR_ARG, "bad optimiser settings (lr %g, momentum %g, weight decay %g)", opt->lr,
                       opt->momentum, opt->weight_decay);
    if (opt->nesterov && opt->momentum <= 0) return ee_fail(ctx, EE_ERR_ARG, "Nesterov needs momentum > 0");
    ee_optim_state *st = calloc(1, sizeof *st);
    if (!st) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory");
    st->opt = *opt;
    if (opt->kind == EE_OPTIM_ADAM) {
        if (st->opt.beta1 == 0 && st->opt.beta2 == 0) { st->opt.beta1 = 0.9f; st->opt.beta2 = 0.999f; }
        if (st->opt.eps == 0) st->opt.eps = 1e-8f;
    }
    st->n = net->nparams;
    st->buf = ee_alloc(st->n * (opt->kind == EE_OPTIM_ADAM ? 2 : 1) * sizeof(float));
    if (!st->buf) { free(st); return ee_fail(ctx, EE_ERR_NOMEM, "out of memory"); }
    *out = st;
    return EE_OK;
}
void ee_optim_state_free(ee_optim_state *st) {
    if (!st) return;
    ee_free(st->buf);
    free(st);
}
size_t ee_optim_state_size(const ee_optim_state *st) { return st->n * (st->opt.kind == EE_OPTIM_ADAM ? 2 : 1); }
float *ee_optim_state_data(ee_optim_state *st) { return st->buf; }
int64_t *ee_optim_state_steps(ee_optim_state *st) { return &st->steps; }

/* one update of params [off, off + n) */
static void update(ee_optim_state *st, ee_net *net, size_t off, size_t n, float lr, int first) {
    float *p = net->params + off;
    const float *g = net->grads + off;
    const ee_optim *o = &st->opt;
    float wd = o->weight_decay, mom = o->momentum;
    if (o->kind == EE_OPTIM_SGD) {
        float *b = st->buf + off;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            if (mom > 0) {
                b[i] = first ? d : mom * b[i] + d;
                d = o->nesterov ? d + mom * b[i] : b[i];
            }
            p[i] -= lr * d;
        }
    } else {
        float *m = st->buf + off, *v = st->buf + st->n + off, b1 = o->beta1, b2 = o->beta2, eps = o->eps;
        double bc1 = 1 - pow(b1, (double)st->steps), bc2 = 1 - pow(b2, (double)st->steps);
        float step = (float)(lr / bc1), sq = (float)sqrt(bc2);
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            m[i] = b1 * m[i] + (1 - b1) * d;
            v[i] = b2 * v[i] + (1 - b2) * d * d;
            p[i] -= step * m[i] / (sqrtf(v[i]) / sq + eps);
        }
    }
}

ee_status ee_optim_step(ee_ctx *ctx, ee_net *net, ee_optim_state *st, float lr) {
    if (st->n != net->nparams) return ee_fail(ctx, EE_ERR_ARG, "optimiser state does not match the network");
    if (net->sealed) return ee_net_check_unsealed(ctx, net, "update the parameters");
    if (!ee_net_grads(net)) return ee_fail(ctx, EE_ERR_NOMEM, "out of memory for gradients");
    ee_threads_apply(ctx);
    int first = st->steps == 0;
    st->steps++;
    if (!net->any_frozen) update(st, net, 0, st->n, lr, first);
    else
        for (int i = 0; i < net->nnodes; i++)
            if (!net->nodes[i].frozen && net->nodes[i].p_len)
                update(st, net, net->nodes[i].p_off, net->nodes[i].p_len, lr, first);
    net->params_version++;
    return EE_OK;
}

float ee_schedule_lr(const ee_schedule *s, int epoch) {
    if (s->kind == EE_SCHED_COSINE) {
        int E = s->epochs > 0 ? s->epochs : 1;
        double t = epoch >= E ? 1.0 : (double)epoch / E;
        return (float)(s->min_lr + 0.5 * (s->base_lr - s->min_lr) * (1 + cos(3.141592653589793 * t)));
    }
    float lr = s->base_lr;
    for (int i = 0; i < s->nmilestones; i++)
        if (epoch >= s->milestones[i]) lr *= s->gamma;
    return lr;
}
