//! A sans-IO HTTP/1.x engine.
//!
//! The connection layer feeds it the bytes an application writes (and, on the
//! response side, the bytes read from the proxy) and gets back what to put on
//! the wire. Nothing in here makes a syscall, reads a clock, touches a global
//! or logs a header value, so every behaviour can be tested and fuzzed over
//! every possible split of the input.

mod chunked;
mod collect;
mod fields;
mod framing;
mod head;
mod reqline;
mod request;
mod response;
mod response_head;
mod scan;
mod statusline;

#[cfg(test)]
mod testutil;

/// The fuzz targets' checks: libFuzzer runs them from `fuzz/` (nightly), the
/// `fuzz_driver` tests on stable.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz_checks;
#[cfg(test)]
pub(crate) mod fuzz_driver;

pub use head::RequestHead;
pub use request::{RequestStream, Step};
pub use response::{Asked, ResponseStream, StreamBuffers, WholeHead};
pub use response_head::{ResponseHead, Retry};

/// Largest message head (request or response) buffered while waiting for its
/// end. A head that has not ended within this many bytes is treated as "not
/// HTTP" and passed through, so a stream that merely looks like HTTP cannot
/// make us hold unbounded memory.
pub const MAX_HEAD: usize = 64 * 1024;
