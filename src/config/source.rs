//! Where settings come from: a lookup from a variable's name to its text (the process
//! environment in production, a map in tests), with the parsing every setting shares.

use super::ConfigError;

/// The variables, through a lookup. Empty counts as unset: Functions app settings are often
/// blank.
pub struct Source<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Source<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Source<'a> {
        Source { lookup }
    }

    /// The variable's text, if set and not blank.
    pub fn text(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// A secret's text, if set, not blank and not a Key Vault reference the platform left
    /// unresolved (see [`is_unresolved_reference`]): such text is no credential.
    pub fn secret(&self, name: &str) -> Option<String> {
        self.text(name).filter(|v| !is_unresolved_reference(v))
    }

    /// Whether the variable is set (and not blank).
    pub fn is_set(&self, name: &str) -> bool {
        self.text(name).is_some()
    }

    /// The variable parsed as `T` and checked by `valid`, else `default` when unset.
    pub fn parsed<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
        expected: &'static str,
        valid: impl Fn(&T) -> bool,
    ) -> Result<T, ConfigError> {
        let Some(text) = self.text(name) else {
            return Ok(default);
        };
        text.trim()
            .parse::<T>()
            .ok()
            .filter(|v| valid(v))
            .ok_or(ConfigError::Invalid {
                name,
                value: text,
                expected,
            })
    }

    /// Whole seconds from 1 to 3600 (an hour is the longest any deadline or period may be).
    pub fn seconds(
        &self,
        name: &'static str,
        default: std::time::Duration,
        expected: &'static str,
    ) -> Result<std::time::Duration, ConfigError> {
        self.parsed(name, default.as_secs(), expected, |v| {
            (1..=3600).contains(v)
        })
        .map(std::time::Duration::from_secs)
    }

    /// A switch: `true/false`, `1/0`, `on/off` or `yes/no`.
    pub fn switch(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(text) = self.text(name) else {
            return Ok(default);
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "on" | "yes" => Ok(true),
            "0" | "false" | "off" | "no" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name,
                value: text,
                expected: "true or false",
            }),
        }
    }
}

/// Whether an app setting's value is a Key Vault reference as written, not the secret it
/// names: App Service passes the reference's own text through when it cannot resolve it (the
/// app's identity may not read the secret yet, or the secret is gone).
pub fn is_unresolved_reference(value: &str) -> bool {
    value
        .trim_start()
        .get(.."@Microsoft.KeyVault(".len())
        .is_some_and(|start| start.eq_ignore_ascii_case("@Microsoft.KeyVault("))
}
