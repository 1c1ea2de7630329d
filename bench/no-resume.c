/*
 * LD_PRELOAD shim for the bench's load generators: every TLS connection starts without a
 * session, so every handshake is a full one.
 *
 * wrk keeps one SSL object per connection slot and reuses it with SSL_clear() after each
 * close; SSL_clear() keeps the last session (and TLS 1.3 tickets received), so wrk's "new"
 * connections resume. h2load does the same with its SSL objects. Here SSL_connect() and
 * SSL_do_handshake() first drop any session the object holds, while the handshake has not
 * started. Built by run.sh with `cc -shared -fPIC`; run.sh checks the effect on nginx's log.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/ssl.h>

static void forget_session(SSL *ssl)
{
    if (SSL_in_before(ssl))
        SSL_set_session(ssl, NULL);
}

int SSL_connect(SSL *ssl)
{
    static int (*real)(SSL *);
    if (!real)
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    forget_session(ssl);
    return real(ssl);
}

int SSL_do_handshake(SSL *ssl)
{
    static int (*real)(SSL *);
    if (!real)
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_do_handshake");
    forget_session(ssl);
    return real(ssl);
}
