/* http.h: what the two HTTP servers of the tool (serve.c, hier.c) share. */
#ifndef EENN_CLI_HTTP_H
#define EENN_CLI_HTTP_H
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
/* queues a response with this status, Content-Type and body; owned: the body is malloc-ed and MHD frees it */
enum MHD_Result http_reply(struct MHD_Connection *con, unsigned status, const char *type, void *data, size_t len,
                           int owned);
/* "HOST:PORT" (an IPv4 address or a name; port 0: any free one) into host and addr; a usage error naming opt
 * ("serve --listen") otherwise */
void http_parse_listen(const char *opt, const char *listen, char *host, size_t hostn, struct sockaddr_in *addr);
/* SIGINT and SIGTERM blocked here and in the threads started after this (the caller sigwaits on *sigs), SIGPIPE
 * ignored (a client that hangs up) */
void http_block_signals(sigset_t *sigs);
#endif
