//! Validation errors: every rejected input says which field and why.

use std::fmt;

/// Why a single value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The value is empty or only white space.
    #[error("must not be empty")]
    Empty,
    /// The value has more characters than allowed.
    #[error("must be at most {max} characters (got {actual})")]
    TooLong {
        /// Largest number of characters allowed.
        max: usize,
        /// Number of characters given.
        actual: usize,
    },
    /// The value contains control characters.
    #[error("must not contain control characters")]
    ControlCharacters,
    /// A number outside its allowed range.
    #[error("must be between {min} and {max}")]
    OutOfRange {
        /// Smallest allowed value, as text.
        min: String,
        /// Largest allowed value, as text.
        max: String,
    },
    /// A decimal with more fractional digits than allowed.
    #[error("must have at most {max} decimal places")]
    TooPrecise {
        /// Largest number of decimal places allowed.
        max: u32,
    },
    /// A list with too few entries.
    #[error("must have at least {min} entries")]
    TooFew {
        /// Smallest number of entries allowed.
        min: usize,
    },
    /// A list with too many entries.
    #[error("must have at most {max} entries (got {actual})")]
    TooMany {
        /// Largest number of entries allowed.
        max: usize,
        /// Number of entries given.
        actual: usize,
    },
    /// A value that is not of the expected kind (text for a number, say).
    #[error("{0}")]
    Malformed(String),
}

/// A rejected field: its path in the input (`items[2].price`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Path of the field in the input, as `items[2].price`.
    pub field: String,
    /// Why the field was rejected.
    pub reason: Invalid,
}

impl FieldError {
    /// A rejection of the field at `field`.
    pub fn new(field: impl Into<String>, reason: Invalid) -> Self {
        Self {
            field: field.into(),
            reason,
        }
    }
}

/// Every field an input was rejected for, in input order (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    /// `Err` holding `errors` when there are any, `Ok(value)` otherwise.
    pub fn check<T>(errors: Vec<FieldError>, value: impl FnOnce() -> T) -> Result<T, Self> {
        if errors.is_empty() {
            Ok(value())
        } else {
            Err(Self(errors))
        }
    }

    /// One rejected field.
    pub fn one(field: impl Into<String>, reason: Invalid) -> Self {
        Self(vec![FieldError::new(field, reason)])
    }

    /// The rejected fields.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Whether `field` is among the rejected ones.
    pub fn names(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid input: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
