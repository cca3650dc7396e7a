/* dnnl_glue.h: what the oneDNN-backed layers share.
 *
 * oneDNN is loaded when a network first needs it (dlopen, dnnl.c), not at program start: on AVX2 CPUs the
 * direct kernel runs the convolutions, and a process that never builds a oneDNN primitive does not map the
 * library (about 5 MB of resident memory). Its functions are called through a table of pointers, filled once
 * per process; the macros below send every dnnl_* call in the library's files through it. */
#ifndef EE_DNNL_GLUE_H
#define EE_DNNL_GLUE_H
#include "internal.h"
#include <oneapi/dnnl/dnnl.h>

typedef struct {
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    void *pad;      /* a scratchpad the net's training Winograd convolutions share (theirs are large: 75 MB for 64
                     * channels at 32x32, batch 128), grown to the largest; one pass runs at a time */
    size_t pad_len;
    void *xblk;     /* a training conv's input reblocked to nChw16c for its backward-weights (conv.c: bwblk), grown to
                     * the largest; one conv's backward runs at a time */
    size_t xblk_len;
} ee_dnnl;

/* the oneDNN functions eenn calls */
#define EE_DNNL_FUNCS(X) \
    X(engine_create) \
    X(engine_destroy) \
    X(stream_create) \
    X(stream_destroy) \
    X(stream_wait) \
    X(memory_create) \
    X(memory_destroy) \
    X(memory_set_data_handle) \
    X(memory_get_memory_desc) \
    X(memory_desc_init_by_tag) \
    X(memory_desc_get_size) \
    X(memory_desc_equal) \
    X(primitive_desc_create) \
    X(primitive_desc_destroy) \
    X(primitive_desc_query) \
    X(primitive_desc_query_md) \
    X(primitive_desc_iterator_create) \
    X(primitive_desc_iterator_next) \
    X(primitive_desc_iterator_fetch) \
    X(primitive_desc_iterator_destroy) \
    X(primitive_create) \
    X(primitive_destroy) \
    X(primitive_execute) \
    X(primitive_attr_create) \
    X(primitive_attr_destroy) \
    X(primitive_attr_set_scratchpad_mode) \
    X(primitive_attr_set_post_ops) \
    X(primitive_attr_set_output_scales) \
    X(post_ops_create) \
    X(post_ops_destroy) \
    X(post_ops_append_sum) \
    X(post_ops_append_eltwise) \
    X(post_ops_append_binary) \
    X(reorder_primitive_desc_create) \
    X(convolution_forward_desc_init) \
    X(convolution_backward_data_desc_init) \
    X(convolution_backward_weights_desc_init) \
    X(sgemm)

typedef struct {
#define EE_DNNL_FIELD(name) __typeof__(&dnnl_##name) name;
    EE_DNNL_FUNCS(EE_DNNL_FIELD)
#undef EE_DNNL_FIELD
} ee_dnnl_api;
extern ee_dnnl_api ee_dnnl_fn; /* written once, under pthread_once, before ee_dnnl_load first returns EE_OK */

/* loads oneDNN if this process has not yet: EE_ERR_BACKEND with the reason if it cannot */
ee_status ee_dnnl_load(ee_ctx *ctx);
/* loads `soname` into a table of its own, for tests of the loader: EE_OK, or EE_ERR_BACKEND with the reason */
ee_status ee_dnnl_probe(ee_ctx *ctx, const char *soname);
/* the net's engine and stream, created (and oneDNN loaded) on first use; NULL with ctx's error set on failure */
ee_dnnl *ee_dnnl_get(ee_ctx *ctx, ee_net *net);

#define EE_DNNL(net) ((ee_dnnl *)(net)->dnnl)

/* one line per EE_DNNL_FUNCS entry; a name missing here would call the real symbol and fail to link, one missing
 * there would name no field and fail to compile */
#ifndef EE_DNNL_LOADER
#define dnnl_engine_create ee_dnnl_fn.engine_create
#define dnnl_engine_destroy ee_dnnl_fn.engine_destroy
#define dnnl_stream_create ee_dnnl_fn.stream_create
#define dnnl_stream_destroy ee_dnnl_fn.stream_destroy
#define dnnl_stream_wait ee_dnnl_fn.stream_wait
#define dnnl_memory_create ee_dnnl_fn.memory_create
#define dnnl_memory_destroy ee_dnnl_fn.memory_destroy
#define dnnl_memory_set_data_handle ee_dnnl_fn.memory_set_data_handle
#define dnnl_memory_get_memory_desc ee_dnnl_fn.memory_get_memory_desc
#define dnnl_memory_desc_init_by_tag ee_dnnl_fn.memory_desc_init_by_tag
#define dnnl_memory_desc_get_size ee_dnnl_fn.memory_desc_get_size
#define dnnl_memory_desc_equal ee_dnnl_fn.memory_desc_equal
#define dnnl_primitive_desc_create ee_dnnl_fn.primitive_desc_create
#define dnnl_primitive_desc_destroy ee_dnnl_fn.primitive_desc_destroy
#define dnnl_primitive_desc_query ee_dnnl_fn.primitive_desc_query
#define dnnl_primitive_desc_query_md ee_dnnl_fn.primitive_desc_query_md
#define dnnl_primitive_desc_iterator_create ee_dnnl_fn.primitive_desc_iterator_create
#define dnnl_primitive_desc_iterator_next ee_dnnl_fn.primitive_desc_iterator_next
#define dnnl_primitive_desc_iterator_fetch ee_dnnl_fn.primitive_desc_iterator_fetch
#define dnnl_primitive_desc_iterator_destroy ee_dnnl_fn.primitive_desc_iterator_destroy
#define dnnl_primitive_create ee_dnnl_fn.primitive_create
#define dnnl_primitive_destroy ee_dnnl_fn.primitive_destroy
#define dnnl_primitive_execute ee_dnnl_fn.primitive_execute
#define dnnl_primitive_attr_create ee_dnnl_fn.primitive_attr_create
#define dnnl_primitive_attr_destroy ee_dnnl_fn.primitive_attr_destroy
#define dnnl_primitive_attr_set_scratchpad_mode ee_dnnl_fn.primitive_attr_set_scratchpad_mode
#define dnnl_primitive_attr_set_post_ops ee_dnnl_fn.primitive_attr_set_post_ops
#define dnnl_primitive_attr_set_output_scales ee_dnnl_fn.primitive_attr_set_output_scales
#define dnnl_post_ops_create ee_dnnl_fn.post_ops_create
#define dnnl_post_ops_destroy ee_dnnl_fn.post_ops_destroy
#define dnnl_post_ops_append_sum ee_dnnl_fn.post_ops_append_sum
#define dnnl_post_ops_append_eltwise ee_dnnl_fn.post_ops_append_eltwise
#define dnnl_post_ops_append_binary ee_dnnl_fn.post_ops_append_binary
#define dnnl_reorder_primitive_desc_create ee_dnnl_fn.reorder_primitive_desc_create
#define dnnl_convolution_forward_desc_init ee_dnnl_fn.convolution_forward_desc_init
#define dnnl_convolution_backward_data_desc_init ee_dnnl_fn.convolution_backward_data_desc_init
#define dnnl_convolution_backward_weights_desc_init ee_dnnl_fn.convolution_backward_weights_desc_init
#define dnnl_sgemm ee_dnnl_fn.sgemm
#endif
#endif
