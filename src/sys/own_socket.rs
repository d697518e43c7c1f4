//! A socket the library opened for itself (the handshake with the proxy, the doctor's
//! checks): time-bounded sends and reads through libc's own functions.

use super::socket::{family_of, wait_for};
use crate::sys;
use libc::c_int;
use std::net::SocketAddr;
use std::time::Instant;

/// A socket of the library's own, closed when dropped.
pub struct OwnSocket(c_int);

impl OwnSocket {
    pub fn open(target: SocketAddr) -> Result<OwnSocket, i32> {
        let family = family_of(target);
        // SAFETY: plain socket(2) call.
        let fd = unsafe { sys::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(sys::errno());
        }
        Ok(OwnSocket(fd))
    }

    pub fn fd(&self) -> c_int {
        self.0
    }

    pub fn send_all(&self, mut bytes: &[u8], deadline: Instant) -> Result<(), i32> {
        while !bytes.is_empty() {
            wait_for(self.0, libc::POLLOUT, deadline)?;
            // SAFETY: sends from a live slice on our own socket.
            let sent = unsafe {
                sys::send(
                    self.0,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            match sent {
                n if n >= 0 => bytes = &bytes[n as usize..],
                _ if retryable(sys::errno()) => {}
                _ => return Err(sys::errno()),
            }
        }
        Ok(())
    }

    pub fn read_to_end(&self, limit: usize, deadline: Instant) -> Result<Vec<u8>, i32> {
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while answer.len() < limit {
            wait_for(self.0, libc::POLLIN, deadline)?;
            // SAFETY: reads into a local buffer of the given size.
            let got = unsafe {
                sys::recv(
                    self.0,
                    chunk.as_mut_ptr().cast(),
                    chunk.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match got {
                0 => break,
                n if n > 0 => answer.extend_from_slice(&chunk[..n as usize]),
                _ if retryable(sys::errno()) => {}
                _ => return Err(sys::errno()),
            }
        }
        Ok(answer)
    }
}

impl Drop for OwnSocket {
    fn drop(&mut self) {
        // SAFETY: we own this fd and close it once.
        unsafe { sys::close(self.fd()) };
    }
}

fn retryable(errno: i32) -> bool {
    errno == libc::EINTR || errno == libc::EAGAIN
}
