//! Wording shared by the messages of every layer.

/// `count` and `noun`, with an `s` unless `count` is 1: "1 label", "2 labels".
pub fn counted(count: u64, noun: &str) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {noun}{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(counted(0, "label"), "0 labels");
        assert_eq!(counted(1, "label"), "1 label");
        assert_eq!(counted(2, "model version"), "2 model versions");
    }
}
