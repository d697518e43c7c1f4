/* OpenSSL through a BIO of our own (BIO_meth_new wrapping send/recv), attached with
 * SSL_set0_rbio/SSL_set0_wbio, as curl 7.88 does: BIO_get_fd fails on it. Offers
 * ALPN h2,http/1.1 and, like curl, checks the host name itself after the handshake
 * (X509_check_host on the peer certificate) and refuses h2. See tls_common.h. */
#include "tls_openssl.h"

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int bio_destroy(BIO *b)
{
	(void)b;
	return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
	case BIO_CTRL_DUP:
		return 1;
	case BIO_CTRL_GET_CLOSE:
		return BIO_get_shutdown(b);
	case BIO_CTRL_SET_CLOSE:
		BIO_set_shutdown(b, (int)num);
		return 1;
	default:
		return 0; /* BIO_C_GET_FD included: no fd for OpenSSL to find */
	}
}

static int bio_write(BIO *b, const char *buf, int len)
{
	int fd = *(int *)BIO_get_data(b);
	ssize_t n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
	BIO_clear_retry_flags(b);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		BIO_set_retry_write(b);
	return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
	int fd = *(int *)BIO_get_data(b);
	ssize_t n = recv(fd, buf, (size_t)len, 0);
	BIO_clear_retry_flags(b);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		BIO_set_retry_read(b);
	return (int)n;
}

int main(int argc, char **argv)
{
	struct args a;
	const char *cafile = tls_init(argc, argv, &a);
	SSL_CTX *ctx = client_ctx(cafile);
	static const unsigned char alpn[] = "\x02h2\x08http/1.1";
	SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
	int fd = connect_blocking(&a);

	BIO_METHOD *meth = BIO_meth_new(BIO_TYPE_MEM, "ctest socket BIO");
	if (!meth || !BIO_meth_set_write(meth, bio_write) || !BIO_meth_set_read(meth, bio_read) ||
	    !BIO_meth_set_ctrl(meth, bio_ctrl) || !BIO_meth_set_create(meth, bio_create) ||
	    !BIO_meth_set_destroy(meth, bio_destroy))
		die("BIO_meth_new: %s", ssl_errstr());
	BIO *bio = BIO_new(meth);
	if (!bio)
		die("BIO_new: %s", ssl_errstr());
	BIO_set_data(bio, &fd);
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		die("SSL_new: %s", ssl_errstr());
	BIO_up_ref(bio);
	SSL_set0_rbio(ssl, bio);
	SSL_set0_wbio(ssl, bio);
	SSL_set_tlsext_host_name(ssl, a.host);
	int ret = SSL_connect(ssl);
	if (ret != 1)
		handshake_failed(ssl, ret);
	check_peer(ssl);
	X509 *peer = SSL_get1_peer_certificate(ssl);
	int ok = X509_check_host(peer, a.host, 0, 0, NULL);
	X509_free(peer);
	if (ok != 1)
		verify_failed("certificate does not match host name %s", a.host);
	const unsigned char *proto = NULL;
	unsigned plen = 0;
	SSL_get0_alpn_selected(ssl, &proto, &plen);
	if (plen == 2 && memcmp(proto, "h2", 2) == 0)
		die("server chose ALPN h2; this client speaks HTTP/1.1 only");

	struct tls_io io = {ssl_write_all, ssl_read_some, ssl};
	int rc = tls_requests(&a, &io);
	SSL_shutdown(ssl);
	SSL_free(ssl);
	BIO_meth_free(meth);
	close(fd);
	SSL_CTX_free(ctx);
	return rc;
}
