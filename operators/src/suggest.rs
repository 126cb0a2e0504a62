//! "Did you mean" suggestions for misspelled names.
//!
//! ```
//! use weir_operators::suggest::did_you_mean;
//!
//! assert_eq!(did_you_mean("temprature", ["temperature", "humidity"]), Some("temperature"));
//! assert_eq!(did_you_mean("xyz", ["temperature"]), None);
//! ```

/// The candidate closest to `name`, if one is close enough to be a likely misspelling.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let score = if c.eq_ignore_ascii_case(name) {
                1.0
            } else {
                strsim::jaro_winkler(&lower, &c.to_ascii_lowercase())
            };
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
