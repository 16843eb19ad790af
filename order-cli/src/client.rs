//! What a failed call means for a script: each kind of failure has its own exit code.

use std::process::ExitCode;

use order_api::client::ClientError;

/// What went wrong, each kind with its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The service answered 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// The service refused the input (400, 413, 415, 422), or the input could not be read.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The service could not be reached, did not answer in time, or answered 429 or 502
    /// to 504.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The service answered 409.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The service answered 401 or 403: no good key, or one without the scope needed.
    #[error("not allowed: {0}")]
    Denied(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The process exit code for this error: 1 other, 3 not found, 4 invalid input,
    /// 5 unavailable (or rate limited), 6 conflict, 7 not allowed (2 is clap's usage error).
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Other(_) => 1,
            Self::NotFound(_) => 3,
            Self::Invalid(_) => 4,
            Self::Unavailable(_) => 5,
            Self::Conflict(_) => 6,
            Self::Denied(_) => 7,
        })
    }
}

/// The full story of an error: the error and each of its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match &e {
            ClientError::Api { status, body, .. } => {
                let said = body.to_string();
                match status {
                    404 => Self::NotFound(said),
                    400 | 413 | 415 | 422 => Self::Invalid(said),
                    409 => Self::Conflict(said),
                    401 | 403 => Self::Denied(said),
                    429 | 502..=504 => Self::Unavailable(said),
                    _ => Self::Other(format!("HTTP {status}: {said}")),
                }
            }
            ClientError::Connect { .. } | ClientError::Timeout(_) => Self::Unavailable(chain(&e)),
            ClientError::Build(_) => Self::Invalid(chain(&e)),
            ClientError::Decode { .. } => Self::Other(chain(&e)),
        }
    }
}
