//! Error reports at the command line's edge: the library names its settings (`out`, `bbox`);
//! here they become the flags a user typed (`--out`, `--bbox`).

use eocube::build::BuildError;
use eocube::spec::SpecError;
use eocube::store::LocationError;

/// `e` and its causes joined by ": " (as anyhow's `{:#}`), each library error about one setting
/// spelled with its flag.
pub fn render(e: &anyhow::Error) -> String {
    e.chain().map(one).collect::<Vec<_>>().join(": ")
}

fn one(e: &(dyn std::error::Error + 'static)) -> String {
    let text = e.to_string();
    let setting = if let Some(s) = e.downcast_ref::<SpecError>() {
        Some(s.setting)
    } else if let Some(b) = e.downcast_ref::<BuildError>() {
        b.setting()
    } else {
        e.downcast_ref::<LocationError>().map(LocationError::setting)
    };
    match setting {
        // The library's message starts with the setting's name; a `config` setting is the file.
        Some(name) if text.starts_with(name) => format!("--{text}"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_flags() {
        let spec = eocube::spec::SpecInput { bbox: None, ..Default::default() }.validate();
        let e = anyhow::Error::from(spec.err().unwrap_or_else(|| panic!("a spec without bbox was accepted")));
        assert!(render(&e).starts_with("--bbox (missing): give the region"), "{}", render(&e));
        let e = anyhow::Error::from(BuildError::NoOutput).context("cannot build");
        assert_eq!(render(&e), format!("cannot build: --{}", BuildError::NoOutput));
        let loc = eocube::store::OutLocation::parse("ftp://x/y").err().unwrap_or_else(|| panic!("ftp accepted"));
        assert!(render(&anyhow::Error::from(loc)).starts_with("--out ftp://x/y: unknown scheme"));
        // other errors are left as they are
        let e = anyhow::anyhow!("out of disk");
        assert_eq!(render(&e), "out of disk");
    }
}
