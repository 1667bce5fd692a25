//! The live trading page, embedded in the binary so the release binary alone serves
//! it, offline. Sources are in `web/`; the stompjs bundle is vendored there.

/// An embedded file: content type and bytes.
pub type Asset = (&'static str, &'static [u8]);

/// The embedded file for a request path.
pub fn asset(path: &str) -> Option<Asset> {
    Some(match path {
        "/" | "/index.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../../web/index.html"),
        ),
        "/app.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../web/app.js"),
        ),
        "/style.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../../web/style.css"),
        ),
        "/vendor/stomp.umd.min.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../web/vendor/stomp.umd.min.js"),
        ),
        "/vendor/LICENSE-stompjs.txt" => (
            "text/plain; charset=utf-8",
            include_bytes!("../../web/vendor/LICENSE-stompjs.txt"),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_scripts_are_embedded() {
        let (kind, page) = asset("/").unwrap();
        assert!(kind.starts_with("text/html"));
        let page = std::str::from_utf8(page).unwrap();
        for src in ["/vendor/stomp.umd.min.js", "/app.js", "/style.css"] {
            assert!(page.contains(src), "{src}");
            assert!(asset(src).is_some(), "{src}");
        }
        assert!(
            asset("/vendor/LICENSE-stompjs.txt")
                .unwrap()
                .1
                .starts_with(b"\n                                 Apache License")
        );
        assert!(asset("/../Cargo.toml").is_none());
    }
}
