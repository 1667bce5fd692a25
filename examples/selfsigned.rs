//! Writes a self-signed certificate for 127.0.0.1 and localhost, and its key, as
//! `cert.pem` and `key.pem` into the directory given, for tests of the TLS
//! listeners (the end-to-end tests run it; never for production).
//!
//! ```text
//! cargo run --example selfsigned -- <directory>
//! ```

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: selfsigned <directory>");
        std::process::exit(2);
    };
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]);
    let cert = match made {
        Ok(c) => c,
        Err(e) => {
            eprintln!("selfsigned: {e}");
            std::process::exit(1);
        }
    };
    let dir = std::path::Path::new(&dir);
    for (name, pem) in [
        ("cert.pem", cert.cert.pem()),
        ("key.pem", cert.signing_key.serialize_pem()),
    ] {
        if let Err(e) = std::fs::write(dir.join(name), pem) {
            eprintln!("selfsigned: {}: {e}", dir.join(name).display());
            std::process::exit(1);
        }
    }
}
