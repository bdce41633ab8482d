//! Stable error codes of the client and admin protocols.
//!
//! The wire form is a lowercase string (`"bad_request"`, ...). Unknown codes from a newer
//! server decode as [`ErrorCode::Other`] so an old client keeps working.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A protocol error code, as carried in `{"err": {"code": ..., "msg": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request was malformed: not a map, a missing or mistyped field, an unknown op.
    BadRequest,
    /// A frame or a field was larger than the server accepts.
    TooLarge,
    /// Not enough replicas answered to meet the requested quorum.
    Unavailable,
    /// The request did not complete in time; it may or may not have been applied.
    Timeout,
    /// The node is shedding load; retry later with backoff.
    Overloaded,
    /// The hello token was missing or wrong.
    Unauthorized,
    /// This node does not own the key (peer protocol).
    NotOwner,
    /// A server-side failure; the message says what happened to state.
    Internal,
    /// A code this client version does not know.
    Other(String),
}

impl ErrorCode {
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::Internal => "internal",
            ErrorCode::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> ErrorCode {
        match s {
            "bad_request" => ErrorCode::BadRequest,
            "too_large" => ErrorCode::TooLarge,
            "unavailable" => ErrorCode::Unavailable,
            "timeout" => ErrorCode::Timeout,
            "overloaded" => ErrorCode::Overloaded,
            "unauthorized" => ErrorCode::Unauthorized,
            "not_owner" => ErrorCode::NotOwner,
            "internal" => ErrorCode::Internal,
            other => ErrorCode::Other(other.to_string()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

/// The `err` body of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub msg: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        ErrorBody {
            code,
            msg: msg.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_strings() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::TooLarge,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::Overloaded,
            ErrorCode::Unauthorized,
            ErrorCode::NotOwner,
            ErrorCode::Internal,
            ErrorCode::Other("future_code".into()),
        ] {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
    }
}
