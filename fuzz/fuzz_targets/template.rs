//! `{{ }}` placeholders in any text: finding, rendering and command splitting never
//! panic and agree with each other; a placeholder's written form reads back as itself; a
//! command without placeholders splits as shell-words splits it (or is refused when quote
//! removal would make one), and splitting never invents or changes a placeholder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sundial::template::{placeholders, render, render_env, split_command, Placeholder, SplitError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let found = placeholders(text);
    let unresolved = render(text, &|_| None);
    assert_eq!(unresolved.is_ok(), found.is_empty(), "{text:?}");
    if let Err(first) = &unresolved {
        assert_eq!(Some(first), found.first(), "{text:?}");
    }
    let emptied = render(text, &|_| Some(String::new())).expect("every placeholder answered");
    assert!(emptied.len() <= text.len(), "{text:?} -> {emptied:?}");
    for p in &found {
        let written = p.written();
        assert_eq!(
            placeholders(&written),
            vec![p.clone()],
            "{text:?}: {written:?}"
        );
    }
    let _ = render_env(text);
    let split = split_command(text);
    if !text.contains("{{") {
        // As shell-words splits it, unless removing quotes or backslashes made braces
        // into a placeholder (`w{'{x'}}`), which is refused.
        match (&split, shell_words::split(text)) {
            (Ok(words), Ok(expected)) => assert_eq!(words, &expected, "{text:?}"),
            (Err(SplitError::Braces { .. }), Ok(expected)) => assert!(
                expected.iter().any(|w| !placeholders(w).is_empty()),
                "{text:?} refused, as {expected:?}"
            ),
            (Err(SplitError::Syntax(_)), Err(_)) => {}
            (ours, theirs) => panic!("{text:?}: {ours:?}, shell-words {theirs:?}"),
        }
    }
    if let Ok(words) = split {
        // Words keep their placeholders whole and in order; a `#` comment may drop some,
        // nothing adds or changes any (a run renders the words, `validate` the text).
        let kept: Vec<Placeholder> = words.iter().flat_map(|w| placeholders(w)).collect();
        let mut written = found.iter();
        assert!(
            kept.iter().all(|p| written.any(|w| w == p)),
            "{text:?} -> {words:?}"
        );
    }
});
