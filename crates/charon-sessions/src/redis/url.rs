//! The Redis URLs of a configuration: parsed as redis-rs parses them, and
//! shown without their passwords (in `Debug` output and in errors).

use redis::{ConnectionInfo, IntoConnectionInfo as _};

use crate::error::StoreError;

/// `url` parsed by redis-rs; `what` names it in the error (`"url"`,
/// `"sentinel url"`).
///
/// # Errors
///
/// [`StoreError::InvalidInput`], naming the URL without its password, for
/// a URL that does not parse, or a TLS URL (`rediss://`) in a build without
/// the `tls` feature.
pub(crate) fn parse_url(url: &str, what: &str) -> Result<ConnectionInfo, StoreError> {
    #[cfg(not(feature = "tls"))]
    if ::url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "rediss" | "valkeys")) {
        return Err(StoreError::InvalidInput(format!(
            "{what} {} asks for TLS: enable charon-sessions' `tls` cargo feature",
            redacted_url(url)
        )));
    }
    url.into_connection_info().map_err(|e| {
        StoreError::InvalidInput(format!(
            "{what} {} is not a valid Redis URL: {e}",
            redacted_url(url)
        ))
    })
}

/// The URL with any password replaced by `<redacted>`.
pub(crate) fn redacted_url(url: &str) -> String {
    match ::url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("<redacted>"));
            }
            let has_secret_query = parsed
                .query_pairs()
                .any(|(k, _)| k == "pass" || k == "password");
            if has_secret_query {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "pass" || k == "password" {
                            "<redacted>".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL, redacted>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_named_without_its_password() {
        let shown = parse_url("redis://:hunter2@127.0.0.1/x", "url")
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("@127.0.0.1/x is not a valid Redis URL"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_urls_name_the_feature_they_need() {
        for url in ["rediss://:hunter2@127.0.0.1", "valkeys://127.0.0.1"] {
            let shown = parse_url(url, "url").unwrap_err().to_string();
            assert!(shown.contains("`tls` cargo feature"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_urls_parse() {
        parse_url("rediss://:hunter2@127.0.0.1", "url").unwrap();
    }
}
