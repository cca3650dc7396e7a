/* table.c: the layer table. Each line names a layer kind whose ops (ee_<name>_ops) a file in this directory
 * defines: its text keys, shape, parameters, forward, backward and cost. The built-in kinds come first, in the
 * order of ee_kind in eenn.h; a new kind is its file plus one line at the end. */
#include "../internal.h"

#define EE_LAYER_LIST(X) \
    X(conv)              \
    X(bn)                \
    X(relu)              \
    X(maxpool)           \
    X(avgpool)           \
    X(gap)               \
    X(linear)            \
    X(dropout)           \
    X(flatten)           \
    X(add)               \
    X(mixpool)           \
    X(uncertainty)       \
    X(embed)             \
    X(gmp)               \
    X(bag)               \
    /* a new kind: one line above this one */

#define EE_DECLARE(n) extern const ee_layer_ops ee_##n##_ops;
#define EE_ENTRY(n) &ee_##n##_ops,
EE_LAYER_LIST(EE_DECLARE)
const ee_layer_ops *const ee_layers[] = {EE_LAYER_LIST(EE_ENTRY)};
const int ee_nlayers = (int)(sizeof ee_layers / sizeof *ee_layers);
