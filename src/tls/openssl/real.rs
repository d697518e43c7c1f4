//! libssl's and libcrypto's own functions, found in the library the program loaded.
#![allow(non_snake_case, clippy::unused_unit)]

use super::{Bio, Ssl, X509};
use crate::tls::library::Library;
use crate::tls::real_in;
use libc::{c_char, c_int, c_long, c_uint, c_void, size_t};

const SSL_ERROR_SYSCALL: c_int = 5;

real_in! { Library::Ssl;
    fn SSL_connect(ssl: Ssl) -> c_int, else -1;
    fn SSL_do_handshake(ssl: Ssl) -> c_int, else -1;
    fn SSL_read(ssl: Ssl, buf: *mut c_void, num: c_int) -> c_int, else -1;
    fn SSL_read_ex(ssl: Ssl, buf: *mut c_void, num: size_t, read: *mut size_t) -> c_int, else 0;
    fn SSL_peek(ssl: Ssl, buf: *mut c_void, num: c_int) -> c_int, else -1;
    fn SSL_peek_ex(ssl: Ssl, buf: *mut c_void, num: size_t, read: *mut size_t) -> c_int, else 0;
    fn SSL_write(ssl: Ssl, buf: *const c_void, num: c_int) -> c_int, else -1;
    fn SSL_write_ex(ssl: Ssl, buf: *const c_void, num: size_t, written: *mut size_t) -> c_int, else 0;
    fn SSL_get_error(ssl: Ssl, ret: c_int) -> c_int, else SSL_ERROR_SYSCALL;
    fn SSL_pending(ssl: Ssl) -> c_int, else 0;
    fn SSL_has_pending(ssl: Ssl) -> c_int, else 0;
    fn SSL_shutdown(ssl: Ssl) -> c_int, else -1;
    fn SSL_get_shutdown(ssl: Ssl) -> c_int, else 0;
    fn SSL_free(ssl: Ssl) -> (), else ();
    fn SSL_clear(ssl: Ssl) -> c_int, else 0;
    fn SSL_get_fd(ssl: Ssl) -> c_int, else -1;
    fn SSL_get_rbio(ssl: Ssl) -> Bio, else std::ptr::null_mut();
    fn SSL_get_wbio(ssl: Ssl) -> Bio, else std::ptr::null_mut();
    fn SSL_ctrl(ssl: Ssl, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long, else 0;
    fn SSL_get_servername(ssl: Ssl, kind: c_int) -> *const c_char, else std::ptr::null();
    fn SSL_is_init_finished(ssl: Ssl) -> c_int, else 0;
    fn SSL_in_init(ssl: Ssl) -> c_int, else 1;
    fn SSL_in_before(ssl: Ssl) -> c_int, else 1;
    fn SSL_get_state(ssl: Ssl) -> c_int, else 0;
    fn SSL_get_verify_result(ssl: Ssl) -> c_long, else 1;
    fn SSL_get0_alpn_selected(ssl: Ssl, data: *mut *const u8, len: *mut c_uint) -> (), else ();
    fn SSL_get1_peer_certificate(ssl: Ssl) -> X509, else std::ptr::null_mut();
    fn SSL_get_peer_certificate(ssl: Ssl) -> X509, else std::ptr::null_mut();
    fn SSL_get0_peer_certificate(ssl: Ssl) -> X509, else std::ptr::null_mut();
    fn SSL_get_peer_cert_chain(ssl: Ssl) -> *mut c_void, else std::ptr::null_mut();
    fn SSL_session_reused(ssl: Ssl) -> c_int, else 0;
    fn SSL_get_SSL_CTX(ssl: Ssl) -> *mut c_void, else std::ptr::null_mut();
    fn SSL_new(ctx: *mut c_void) -> Ssl, else std::ptr::null_mut();
    fn SSL_set_fd(ssl: Ssl, fd: c_int) -> c_int, else 0;
    fn SSL_set_connect_state(ssl: Ssl) -> (), else ();
    fn SSL_get0_param(ssl: Ssl) -> *mut c_void, else std::ptr::null_mut();
    fn SSL_set1_param(ssl: Ssl, param: *mut c_void) -> c_int, else 0;
    fn SSL_set1_host(ssl: Ssl, host: *const c_char) -> c_int, else 0;
    fn SSL_get_verify_mode(ssl: Ssl) -> c_int, else 0;
    fn SSL_get_verify_callback(ssl: Ssl) -> *mut c_void, else std::ptr::null_mut();
    fn SSL_set_verify(ssl: Ssl, mode: c_int, callback: *mut c_void) -> (), else ();
    fn SSL_set_alpn_protos(ssl: Ssl, protos: *const u8, len: c_uint) -> c_int, else 1;
    fn SSL_get_current_cipher(ssl: Ssl) -> *const c_void, else std::ptr::null();
    fn SSL_get_ex_data(ssl: Ssl, index: c_int) -> *mut c_void, else std::ptr::null_mut();
    fn SSL_CIPHER_find(ssl: Ssl, id: *const u8) -> *const c_void, else std::ptr::null();
    fn SSL_get_ciphers(ssl: Ssl) -> *mut c_void, else std::ptr::null_mut();
}
real_in! { Library::Crypto;
    fn BIO_read(bio: Bio, buf: *mut c_void, len: c_int) -> c_int, else -1;
    fn BIO_new_socket(fd: c_int, close_flag: c_int) -> Bio, else std::ptr::null_mut();
    fn BIO_free(bio: Bio) -> c_int, else 0;
    fn BIO_write(bio: Bio, buf: *const c_void, len: c_int) -> c_int, else -1;
    fn BIO_test_flags(bio: Bio, flags: c_int) -> c_int, else 0;
    fn d2i_X509(out: *mut X509, input: *mut *const u8, len: c_long) -> X509, else std::ptr::null_mut();
    fn X509_free(x509: X509) -> (), else ();
    fn X509_up_ref(x509: X509) -> c_int, else 0;
    fn ERR_set_mark() -> c_int, else 0;
    fn OPENSSL_sk_value(stack: *const c_void, index: c_int) -> *const c_void, else std::ptr::null();
    fn ERR_pop_to_mark() -> c_int, else 0;
}
