//! Values echoed from users' input into logs, statuses and debug views are cut to a bound,
//! so a 1 MB name or error message cannot flood them.

use std::borrow::Cow;

/// At most `max` bytes of `text` (cut at a character boundary), saying how long it was.
pub fn capped(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_says_its_length() {
        assert_eq!(capped("short", 8), "short");
        let long = "é".repeat(10);
        assert_eq!(capped(&long, 5), "éé... (20 bytes)");
    }
}
