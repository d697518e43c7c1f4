//! The proxy's error codes: an answer carrying `x-lunar-error: <code>` is the proxy's
//! failure, not the provider's, and is hidden by sending the request to its destination.
//! The code's meaning (Lunar's contract table) goes into the one warning that says why.

/// What the proxy's error `code` means, for the warning that names it.
pub fn meaning(code: &str) -> &'static str {
    match code.trim() {
        "1" => "request lacks x-lunar-host",
        "2" => "endpoint cannot be reached",
        "3" => "gateway timeout",
        "4" => "endpoint not found",
        "5" => "could not resolve host",
        "6" => "host not in the proxy's allow list",
        "7" => "host in the proxy's block list",
        "10" => "gateway shutting down",
        _ => "unknown proxy error",
    }
}
