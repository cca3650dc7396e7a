/* dnnl_glue.h: what the oneDNN-backed layers share. */
#ifndef EE_DNNL_GLUE_H
#define EE_DNNL_GLUE_H
#include "internal.h"
#include <oneapi/dnnl/dnnl.h>

typedef struct {
    dnnl_engine_t eng;
    dnnl_stream_t strm;
} ee_dnnl;

#define EE_DNNL(net) ((ee_dnnl *)(net)->dnnl)
#endif
