/* http.h: what the two HTTP servers of the tool (serve.c, hier.c) share. */
#ifndef EENN_CLI_HTTP_H
#define EENN_CLI_HTTP_H
#include <microhttpd.h>
#include <stddef.h>
/* queues a response with this status, Content-Type and body; owned: the body is malloc-ed and MHD frees it */
enum MHD_Result http_reply(struct MHD_Connection *con, unsigned status, const char *type, void *data, size_t len,
                           int owned);
#endif
