//! Query parameters of tile, thumbnail and point requests, checked once into a [`Style`] and a
//! time index.
//!
//! Owns: the parameter names (`time`, `bands`, `rescale`, `colormap`, `expression`), their
//! defaults and the 400 messages, each naming the parameter and the fix. Unknown parameters are
//! ignored (cache busters, `token`). Must not touch: I/O or pixels.

use super::colormap::{self, Colormap};
use super::expr::Expr;
use super::render::{DEFAULT_EXPRESSION_RESCALE, DEFAULT_RESCALE, Stretch, Style};
use crate::time::Date;

/// A parameter that cannot be used: `{param}={value}: {fix}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}={value:?}: {fix}")]
pub struct ParamError {
    pub param: &'static str,
    pub value: String,
    pub fix: String,
}

fn bad(param: &'static str, value: &str, fix: impl Into<String>) -> ParamError {
    ParamError { param, value: value.chars().take(200).collect(), fix: fix.into() }
}

/// The decoded query string: `(name, value)` pairs in order.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// Longest query string read (longer ones are refused: no parameter needs more).
pub const MAX_QUERY_LEN: usize = 4096;

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ParamError> {
        let raw = raw.unwrap_or("");
        if raw.len() > MAX_QUERY_LEN {
            return Err(bad(
                "query",
                &raw[..raw.floor_char_boundary(40)],
                format!("the query string is longer than {MAX_QUERY_LEN} bytes"),
            ));
        }
        let pairs =
            url::form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        Ok(Query { pairs })
    }

    /// The last value of `name` (a repeated parameter: the last one wins, as in most servers).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The query string again without `names` (e.g. `token`), for carrying into documents.
    pub fn without(&self, names: &[&str]) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs.iter().filter(|(k, _)| !names.contains(&k.as_str())) {
            s.append_pair(k, v);
        }
        s.finish()
    }
}

/// The style of a request against a cube with `bands`.
pub fn style(q: &Query, bands: &[String]) -> Result<Style, ParamError> {
    let colormap = match q.get("colormap").map(str::trim).filter(|s| !s.is_empty()) {
        Some(name) => Some(Colormap::named(name).ok_or_else(|| {
            bad("colormap", name, format!("give one of {} (add _r to reverse it)", colormap::NAMES.join(", ")))
        })?),
        None => None,
    };
    if let Some(text) = q.get("expression").filter(|s| !s.trim().is_empty()) {
        let expr = Expr::parse(text, bands).map_err(|e| bad("expression", text, e.to_string()))?;
        let stretch = stretches(q, 1, DEFAULT_EXPRESSION_RESCALE)?[0];
        return Ok(Style::Expression { expr, stretch, colormap: colormap.unwrap_or_else(Colormap::gray) });
    }
    let chosen = match q.get("bands").filter(|s| !s.trim().is_empty()) {
        Some(list) => {
            let mut idx = Vec::new();
            for name in list.split(',').map(str::trim) {
                let i = bands.iter().position(|b| b == name).ok_or_else(|| {
                    bad("bands", list, format!("no band {name:?} in this cube; its bands are {}", bands.join(", ")))
                })?;
                idx.push(i);
            }
            idx
        }
        None => default_bands(bands),
    };
    match chosen.as_slice() {
        [b] => {
            let stretch = stretches(q, 1, DEFAULT_RESCALE)?[0];
            Ok(Style::Band { band: *b, stretch, colormap: colormap.unwrap_or_else(Colormap::gray) })
        }
        [r, g, b] => {
            if colormap.is_some() {
                return Err(bad(
                    "colormap",
                    q.get("colormap").unwrap_or(""),
                    "a colormap applies to one band or an expression; give bands=NAME (one band) or leave colormap out",
                ));
            }
            let s = stretches(q, 3, DEFAULT_RESCALE)?;
            Ok(Style::Rgb { bands: [*r, *g, *b], stretch: [s[0], s[1], s[2]] })
        }
        _ => Err(bad(
            "bands",
            q.get("bands").unwrap_or(""),
            format!(
                "give one band or three (red, green, blue order), e.g. bands={}",
                bands.iter().take(3).cloned().collect::<Vec<_>>().join(",")
            ),
        )),
    }
}

/// red, green, blue when the cube has them, else its first three bands, else its first.
fn default_bands(bands: &[String]) -> Vec<usize> {
    let rgb: Vec<usize> = ["red", "green", "blue"].iter().filter_map(|n| bands.iter().position(|b| b == n)).collect();
    if rgb.len() == 3 {
        rgb
    } else if bands.len() >= 3 {
        vec![0, 1, 2]
    } else {
        vec![0]
    }
}

/// `rescale=lo,hi` once for all bands, `n` times (one parameter per band), or once with `2 n`
/// numbers.
fn stretches(q: &Query, n: usize, default: (f32, f32)) -> Result<Vec<Stretch>, ParamError> {
    let values = q.all("rescale");
    if values.is_empty() {
        return Ok(vec![Stretch::new(default); n]);
    }
    let joined = values.join(",");
    let fix = if n == 1 {
        "give lo,hi in reflectance (expression values for expression=), e.g. rescale=0,0.3".to_string()
    } else {
        "give lo,hi once for all bands, or once per band (rescale=0,0.3&rescale=0,0.25&rescale=0,0.2)".to_string()
    };
    let mut nums = Vec::new();
    for part in joined.split(',') {
        let v: f32 =
            part.trim().parse().map_err(|_| bad("rescale", &joined, format!("{part:?} is not a number; {fix}")))?;
        if !v.is_finite() {
            return Err(bad("rescale", &joined, format!("{part} is not finite; {fix}")));
        }
        nums.push(v);
    }
    let pairs: Vec<Stretch> = nums.chunks(2).filter(|c| c.len() == 2).map(|c| Stretch { lo: c[0], hi: c[1] }).collect();
    if nums.len() % 2 != 0 || !(pairs.len() == 1 || pairs.len() == n) {
        return Err(bad("rescale", &joined, fix));
    }
    if let Some(s) = pairs.iter().find(|s| s.lo == s.hi) {
        return Err(bad("rescale", &joined, format!("lo and hi are both {}; {fix}", s.lo)));
    }
    Ok(if pairs.len() == 1 { vec![pairs[0]; n] } else { pairs })
}

/// The time step `time=` asks for among `times` (days since 1970-01-01, ascending): a label
/// (`2024`, `2024-05`), a date (`2024-05-17`, nearest bin start; ties to the earlier) or an
/// index (`#3`); absent, the latest.
pub fn time_index(q: &Query, times: &[i64]) -> Result<usize, ParamError> {
    let last = times.len().saturating_sub(1);
    let Some(raw) = q.get("time").map(str::trim).filter(|s| !s.is_empty()) else { return Ok(last) };
    let fix =
        "give a label or a date of the cube's time steps, e.g. time=2024-05 or time=2024-05-17 (nearest), or #INDEX";
    if let Some(i) = raw.strip_prefix('#') {
        return i
            .parse::<usize>()
            .ok()
            .filter(|i| *i < times.len())
            .ok_or_else(|| bad("time", raw, format!("the cube has time steps #0 to #{last}")));
    }
    let date = parse_date(raw).ok_or_else(|| bad("time", raw, fix))?;
    let day = crate::time::days_since_epoch(date);
    // A label that names a whole month or year means the bin that starts in it, when one does.
    let best = times
        .iter()
        .enumerate()
        .min_by_key(|(_, t)| ((*t - day).abs(), **t))
        .map(|(i, _)| i)
        .ok_or_else(|| bad("time", raw, "the cube has no time steps"))?;
    Ok(best)
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` (an RFC 3339 instant is read as its date).
pub fn parse_date(s: &str) -> Option<Date> {
    let s = match s.as_bytes().get(10) {
        Some(b'T' | b' ') => &s[..10],
        _ => s,
    };
    let parts: Vec<&str> = s.split('-').collect();
    let num = |p: &str, len: usize| {
        (p.len() == len && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u32>().ok()).flatten()
    };
    match parts.as_slice() {
        [y] => Date::from_ymd_opt(num(y, 4)? as i32, 1, 1),
        [y, m] => Date::from_ymd_opt(num(y, 4)? as i32, num(m, 2)?, 1),
        [y, m, d] => Date::from_ymd_opt(num(y, 4)? as i32, num(m, 2)?, num(d, 2)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bands() -> Vec<String> {
        ["red", "green", "blue", "nir"].map(String::from).to_vec()
    }

    fn q(s: &str) -> Query {
        Query::parse(Some(s)).unwrap()
    }

    #[test]
    fn default_style_is_rgb_at_the_default_stretch() {
        let s = style(&q(""), &bands()).unwrap();
        let d = Stretch::new(DEFAULT_RESCALE);
        assert_eq!(s, Style::Rgb { bands: [0, 1, 2], stretch: [d, d, d] });
        let s = style(&q("bands=nir,red,green&rescale=0,0.5"), &bands()).unwrap();
        assert_eq!(s.bands(), vec![3, 0, 1]);
        let s = style(&q("bands=blue,green,red&rescale=0,0.1&rescale=0,0.2&rescale=0,0.3"), &bands()).unwrap();
        let Style::Rgb { stretch, .. } = s else { panic!() };
        assert_eq!(stretch[2], Stretch { lo: 0.0, hi: 0.3 });
        let s = style(&q("bands=red,green,blue&rescale=0,0.1,0,0.2,0,0.3"), &bands()).unwrap();
        let Style::Rgb { stretch, .. } = s else { panic!() };
        assert_eq!(stretch[1], Stretch { lo: 0.0, hi: 0.2 });
    }

    #[test]
    fn one_band_and_expressions_take_a_colormap() {
        let s = style(&q("bands=nir&colormap=viridis&rescale=0.1,0.4"), &bands()).unwrap();
        assert!(
            matches!(s, Style::Band { band: 3, stretch: Stretch { lo, hi }, ref colormap } if lo == 0.1 && hi == 0.4 && colormap.name == "viridis")
        );
        let s = style(&q("expression=(nir-red)/(nir%2Bred)&colormap=rdylgn&bands=red"), &bands()).unwrap();
        let Style::Expression { expr, stretch, .. } = s else { panic!() };
        assert_eq!(expr.bands(), &[0, 3]);
        assert_eq!(stretch, Stretch::new(DEFAULT_EXPRESSION_RESCALE));
    }

    #[test]
    fn malformed_parameters_name_themselves_and_the_fix() {
        let e = |s: &str| style(&q(s), &bands()).unwrap_err();
        let x = e("bands=red,grn,blue");
        assert_eq!(x.param, "bands");
        assert!(x.fix.contains("\"grn\"") && x.fix.contains("red, green, blue, nir"), "{x}");
        assert!(e("bands=red,green").fix.contains("one band or three"));
        assert_eq!(e("colormap=jet").param, "colormap");
        assert!(e("colormap=jet").fix.contains("viridis"));
        assert!(e("colormap=viridis").fix.contains("one band or an expression"));
        assert_eq!(e("rescale=0").param, "rescale");
        assert_eq!(e("rescale=a,b").param, "rescale");
        assert_eq!(e("rescale=0,1,0,1").param, "rescale", "two pairs for three bands");
        assert_eq!(e("rescale=1,1").param, "rescale");
        assert_eq!(e("rescale=0,inf").param, "rescale");
        let x = e("expression=(nir-red");
        assert_eq!(x.param, "expression");
        assert!(x.to_string().contains("at character 9"), "{x}");
        assert!(Query::parse(Some(&"a".repeat(5000))).is_err());
    }

    #[test]
    fn time_is_a_label_a_date_or_an_index() {
        let d = |s: &str| crate::time::days_since_epoch(parse_date(s).unwrap());
        let times = vec![d("2023-05-01"), d("2023-06-01"), d("2023-07-01")];
        let t = |s: &str| time_index(&q(s), &times);
        assert_eq!(t(""), Ok(2));
        assert_eq!(t("time=2023-06"), Ok(1));
        assert_eq!(t("time=2023-06-10"), Ok(1));
        assert_eq!(t("time=2023-06-20"), Ok(2));
        assert_eq!(t("time=2023-06-16"), Ok(1), "a tie goes to the earlier");
        assert_eq!(t("time=2023-06-01T10:00:00Z"), Ok(1));
        assert_eq!(t("time=1999"), Ok(0));
        assert_eq!(t("time=%230"), Ok(0));
        assert_eq!(t("time=%233").unwrap_err().param, "time");
        for bad in ["2023-13", "2023-6", "june", "2023-06-31", "20230601"] {
            assert_eq!(t(&format!("time={bad}")).unwrap_err().param, "time", "{bad}");
        }
        assert_eq!(q("token=x&bands=red&token=y").without(&["token"]), "bands=red");
    }
}
