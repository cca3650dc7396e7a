/* linear.c: fully connected layer y = x W^T + b on (n, in) vectors; W is (out, in) as in PyTorch.
 * The input must be a vector per sample (after gap or flatten). GEMMs run through oneDNN's sgemm. */
#include "init.h"
#include <string.h>

static ee_status linear_shape(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    (void)net;
    if (nd->ins.h != 1 || nd->ins.w != 1)
        return ee_fail(ctx, EE_ERR_FORMAT, "linear '%s' needs a vector input (put gap or flatten before it), got %dx%dx%d",
                       nd->name, nd->ins.c, nd->ins.h, nd->ins.w);
    nd->out.c = nd->a[0];
    nd->out.h = nd->out.w = 1;
    nd->p_len = (size_t)nd->a[0] * nd->ins.c + (nd->a[1] ? nd->a[0] : 0);
    return EE_OK;
}
static void linear_tensors(ee_net *net, ee_node *nd) {
    ee_net_add_tensor(net, nd, "weight", 0, nd->p_off, 2, nd->a[0], nd->ins.c, 0, 0);
    if (nd->a[1]) ee_net_add_tensor(net, nd, "bias", 0, nd->p_off + (size_t)nd->a[0] * nd->ins.c, 1, nd->a[0], 0, 0, 0);
}
static void linear_init(ee_ctx *ctx, ee_net *net, ee_node *nd) {
    float *w = net->params + nd->p_off;
    size_t nw = (size_t)nd->a[0] * nd->ins.c;
    ee_init_weights(ctx, nd->init, w, nw, nd->ins.c, nd->a[0], nd->a[1] ? w + nw : NULL, nd->a[0]);
}
static void linear_count(const ee_net *net, const ee_node *nd, double *macs, double *flops, double *prof) {
    (void)net;
    double in = nd->ins.c, out = nd->a[0];
    *macs = in * out;
    *flops = 2 * in * out + (nd->a[1] ? out : 0);
    *prof = (2 * in - 1) * out; /* the reference profiler: bias not counted */
}
static ee_status linear_forward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n, int train) {
    (void)train;
    int in = nd->ins.c, out = nd->a[0];
    const float *x = ee_node_input(net, nd, 0), *w = net->params + nd->p_off, *b = w + (size_t)in * out;
    ee_status s = ee_sgemm(ctx, 'N', 'T', n, out, in, 1.0f, x, in, w, in, 0.0f, nd->y, out);
    if (s) return s;
    if (nd->a[1])
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) nd->y[(size_t)i * out + j] += b[j];
    return EE_OK;
}
static ee_status linear_backward(ee_ctx *ctx, ee_net *net, ee_node *nd, int n) {
    int in = nd->ins.c, out = nd->a[0];
    const float *x = ee_node_input(net, nd, 0), *w = net->params + nd->p_off, *dy = nd->dy;
    float *dw = net->grads + nd->p_off, *db = dw + (size_t)in * out;
    ee_status s = ee_sgemm(ctx, 'T', 'N', out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
    if (s) return s;
    if (nd->a[1]) {
        for (int j = 0; j < out; j++) db[j] = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) db[j] += dy[(size_t)i * out + j];
    }
    int acc;
    float *dx = ee_node_input_grad(net, nd, 0, &acc);
    return dx ? ee_sgemm(ctx, 'N', 'N', n, in, out, 1.0f, dy, out, w, in, acc ? 1.0f : 0.0f, dx, in) : EE_OK;
}

const ee_layer_ops ee_linear_ops = {"linear", linear_shape, linear_tensors, linear_init, linear_forward,
                                    linear_backward, linear_count, NULL};
