//! Band maths: a small parser and a vectorized evaluator, shared by the tile server's
//! `expression=` and the cube's spectral indices (`--index`, [`crate::index`]).
//!
//! Owns: the grammar (band names, numbers, `+ - * /`, unary minus, parentheses, `abs`, `sqrt`,
//! `min`, `max`) and its error messages, which say at which character the expression goes wrong.
//! Must not touch: where the band values come from or how results are coloured.
//!
//! ```text
//! expr    := term (('+' | '-') term)*
//! term    := unary (('*' | '/') unary)*
//! unary   := ('-' | '+') unary | primary
//! primary := number | band | func '(' expr (',' expr)* ')' | '(' expr ')'
//! ```
//! Values are reflectance (`f32`); `NaN` is no data: a fill input, a division by zero or the
//! square root of a negative number give `NaN`, and `NaN` stays `NaN` through every operation.

/// Longest expression accepted, in characters.
pub const MAX_LEN: usize = 512;
/// Deepest nesting accepted (parentheses, unary minus, function calls): bounds the recursion.
const MAX_DEPTH: usize = 32;
/// Most operations accepted: bounds the work per pixel.
const MAX_NODES: usize = 128;

/// Why an expression cannot be used; `at` is the 1-based character position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at character {at}: {shown}")]
pub struct ExprError {
    pub at: usize,
    pub message: String,
    /// The expression with a `^` marker before the offending character.
    pub shown: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Num(f32),
    Band(usize),
    Neg(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Abs,
    Sqrt,
    Min,
    Max,
}

/// A parsed expression over the cube's bands.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    root: Node,
    /// The cube's band indices it reads, ascending.
    bands: Vec<usize>,
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f32),
    Ident(String),
    Sym(char),
}

impl Expr {
    /// Parse `text`; band names are those of `bands` (case-sensitive, as in the cube).
    pub fn parse(text: &str, bands: &[String]) -> Result<Expr, ExprError> {
        let chars: Vec<char> = text.chars().collect();
        let err = |at: usize, message: String| ExprError { at: at + 1, message, shown: marked(&chars, at) };
        if chars.len() > MAX_LEN {
            return Err(err(MAX_LEN, format!("the expression is longer than {MAX_LEN} characters")));
        }
        let toks = lex(&chars).map_err(|(at, m)| err(at, m))?;
        let mut p = Parser { toks, pos: 0, bands, used: Vec::new(), nodes: 0, end: chars.len() };
        if p.toks.is_empty() {
            return Err(err(0, "the expression is empty; give e.g. (nir-red)/(nir+red)".into()));
        }
        let root = p.expr(0).map_err(|(at, m)| err(at, m))?;
        if let Some((at, t)) = p.toks.get(p.pos) {
            return Err(err(*at, format!("unexpected {} after a complete expression", describe(t))));
        }
        let mut bands_used = p.used;
        bands_used.sort_unstable();
        bands_used.dedup();
        Ok(Expr { root, bands: bands_used, text: text.to_string() })
    }

    /// The cube's band indices the expression reads, ascending.
    pub fn bands(&self) -> &[usize] {
        &self.bands
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates over `n` pixels; `values(band)` gives that band's `n` reflectances (`NaN` for
    /// fill), for every band in [`Expr::bands`].
    pub fn eval<'a>(&self, n: usize, values: &dyn Fn(usize) -> &'a [f32]) -> Vec<f32> {
        eval(&self.root, n, values)
    }
}

fn eval<'a>(node: &Node, n: usize, values: &dyn Fn(usize) -> &'a [f32]) -> Vec<f32> {
    match node {
        Node::Num(v) => vec![*v; n],
        Node::Band(b) => {
            let v = values(*b);
            if v.len() == n { v.to_vec() } else { vec![f32::NAN; n] }
        }
        Node::Neg(a) => {
            let mut v = eval(a, n, values);
            v.iter_mut().for_each(|x| *x = -*x);
            v
        }
        Node::Bin(op, a, b) => {
            let mut x = eval(a, n, values);
            let y = eval(b, n, values);
            for (x, &y) in x.iter_mut().zip(&y) {
                *x = match op {
                    Op::Add => *x + y,
                    Op::Sub => *x - y,
                    Op::Mul => *x * y,
                    // IEEE gives +-inf for x / 0: here it is no data.
                    Op::Div if y == 0.0 => f32::NAN,
                    Op::Div => *x / y,
                };
            }
            x
        }
        Node::Call(f, args) => {
            let mut it = args.iter();
            let mut acc = it.next().map(|a| eval(a, n, values)).unwrap_or_else(|| vec![f32::NAN; n]);
            match f {
                Func::Abs => acc.iter_mut().for_each(|x| *x = x.abs()),
                // sqrt of a negative number is NaN already.
                Func::Sqrt => acc.iter_mut().for_each(|x| *x = x.sqrt()),
                Func::Min | Func::Max => {
                    for a in it {
                        let y = eval(a, n, values);
                        for (x, &y) in acc.iter_mut().zip(&y) {
                            // f32::min ignores NaN; no data must win.
                            *x = if x.is_nan() || y.is_nan() {
                                f32::NAN
                            } else if *f == Func::Min {
                                x.min(y)
                            } else {
                                x.max(y)
                            };
                        }
                    }
                }
            }
            acc
        }
    }
}

fn marked(chars: &[char], at: usize) -> String {
    let at = at.min(chars.len());
    let mut s: String = chars[..at].iter().collect();
    s.push('^');
    s.extend(&chars[at..]);
    s
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(v) => format!("number {v}"),
        Tok::Ident(s) => format!("name {s:?}"),
        Tok::Sym(c) => format!("{c:?}"),
    }
}

type PResult<T> = Result<T, (usize, String)>;

fn lex(chars: &[char]) -> PResult<Vec<(usize, Tok)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            // an exponent: 1e-3, 2E5
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let s: String = chars[start..i].iter().collect();
            let v: f32 = s.parse().map_err(|_| (start, format!("{s:?} is not a number")))?;
            if !v.is_finite() {
                return Err((start, format!("{s} is too large")));
            }
            out.push((start, Tok::Num(v)));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((start, Tok::Ident(chars[start..i].iter().collect())));
        } else if "+-*/(),".contains(c) {
            out.push((i, Tok::Sym(c)));
            i += 1;
        } else {
            return Err((
                i,
                format!("unexpected character {c:?}; use band names, numbers, + - * / ( ) and abs, sqrt, min, max"),
            ));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    bands: &'a [String],
    used: Vec<usize>,
    nodes: usize,
    end: usize,
}

impl Parser<'_> {
    fn peek_sym(&self) -> Option<char> {
        match self.toks.get(self.pos) {
            Some((_, Tok::Sym(c))) => Some(*c),
            _ => None,
        }
    }

    fn here(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn count(&mut self) -> PResult<()> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err((self.here(), format!("the expression has more than {MAX_NODES} operations")));
        }
        Ok(())
    }

    fn deeper(&self, depth: usize) -> PResult<usize> {
        if depth >= MAX_DEPTH {
            return Err((self.here(), format!("the expression nests more than {MAX_DEPTH} levels deep")));
        }
        Ok(depth + 1)
    }

    fn expr(&mut self, depth: usize) -> PResult<Node> {
        let depth = self.deeper(depth)?;
        let mut left = self.term(depth)?;
        while let Some(c @ ('+' | '-')) = self.peek_sym() {
            self.pos += 1;
            self.count()?;
            let right = self.term(depth)?;
            left = Node::Bin(if c == '+' { Op::Add } else { Op::Sub }, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn term(&mut self, depth: usize) -> PResult<Node> {
        let mut left = self.unary(depth)?;
        while let Some(c @ ('*' | '/')) = self.peek_sym() {
            self.pos += 1;
            self.count()?;
            let right = self.unary(depth)?;
            left = Node::Bin(if c == '*' { Op::Mul } else { Op::Div }, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> PResult<Node> {
        match self.peek_sym() {
            Some('-') => {
                let depth = self.deeper(depth)?;
                self.pos += 1;
                self.count()?;
                Ok(Node::Neg(Box::new(self.unary(depth)?)))
            }
            Some('+') => {
                let depth = self.deeper(depth)?;
                self.pos += 1;
                self.unary(depth)
            }
            _ => self.primary(depth),
        }
    }

    fn primary(&mut self, depth: usize) -> PResult<Node> {
        let at = self.here();
        let Some((_, tok)) = self.toks.get(self.pos).cloned() else {
            return Err((at, "the expression ends where a value was expected".into()));
        };
        self.pos += 1;
        match tok {
            Tok::Num(v) => Ok(Node::Num(v)),
            Tok::Sym('(') => {
                let inner = self.expr(depth)?;
                self.expect(')', "a closing ')'")?;
                Ok(inner)
            }
            Tok::Sym(c) => Err((at, format!("unexpected {c:?} where a value was expected"))),
            Tok::Ident(name) => {
                if self.peek_sym() == Some('(') {
                    let func = match name.to_ascii_lowercase().as_str() {
                        "abs" => Func::Abs,
                        "sqrt" => Func::Sqrt,
                        "min" => Func::Min,
                        "max" => Func::Max,
                        _ => {
                            return Err((
                                at,
                                format!("unknown function {name:?}; the functions are abs, sqrt, min, max"),
                            ));
                        }
                    };
                    self.pos += 1;
                    self.count()?;
                    let mut args = vec![self.expr(depth)?];
                    while self.peek_sym() == Some(',') {
                        self.pos += 1;
                        args.push(self.expr(depth)?);
                    }
                    self.expect(')', "',' or a closing ')'")?;
                    let want = match func {
                        Func::Abs | Func::Sqrt => 1..=1,
                        Func::Min | Func::Max => 2..=MAX_NODES,
                    };
                    if !want.contains(&args.len()) {
                        let n = if want.start() == want.end() { "one argument" } else { "two or more arguments" };
                        return Err((at, format!("{name} takes {n}, not {}", args.len())));
                    }
                    return Ok(Node::Call(func, args));
                }
                match self.bands.iter().position(|b| *b == name) {
                    Some(i) => {
                        self.used.push(i);
                        Ok(Node::Band(i))
                    }
                    None => Err((at, format!("unknown band {name:?}; the cube's bands are {}", self.bands.join(", ")))),
                }
            }
        }
    }

    fn expect(&mut self, c: char, what: &str) -> PResult<()> {
        if self.peek_sym() == Some(c) {
            self.pos += 1;
            return Ok(());
        }
        let at = self.here();
        let found = self.toks.get(self.pos).map_or("the end".to_string(), |(_, t)| describe(t));
        Err((at, format!("expected {what}, found {found}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bands() -> Vec<String> {
        ["red", "green", "blue", "nir"].map(String::from).to_vec()
    }

    fn eval1(text: &str, vals: [f32; 4]) -> f32 {
        let e = Expr::parse(text, &bands()).unwrap();
        let cols: Vec<Vec<f32>> = vals.iter().map(|v| vec![*v]).collect();
        e.eval(1, &|b| &cols[b][..])[0]
    }

    #[test]
    fn evaluates_with_precedence() {
        let v = [0.1, 0.2, 0.3, 0.5];
        assert!((eval1("(nir-red)/(nir+red)", v) - 0.4 / 0.6).abs() < 1e-6);
        assert!((eval1("nir - red * 2", v) - 0.3).abs() < 1e-6);
        assert!((eval1("-red + -(-green)", v) - 0.1).abs() < 1e-6);
        assert!((eval1("2.5e-1 * 4 / 2", v) - 0.5).abs() < 1e-6);
        assert!((eval1("sqrt(abs(red - nir))", v) - 0.4f32.sqrt()).abs() < 1e-6);
        assert!((eval1("max(red, green, blue) - min(red, 1)", v) - 0.2).abs() < 1e-6);
        assert_eq!(Expr::parse("(nir-red)/(nir+red)", &bands()).unwrap().bands(), &[0, 3]);
    }

    #[test]
    fn no_data_propagates() {
        let v = [0.1, 0.2, 0.3, 0.5];
        assert!(eval1("red / (green - green)", v).is_nan(), "division by zero is no data");
        assert!(eval1("sqrt(red - nir)", v).is_nan());
        assert!(eval1("min(red, nir / 0)", v).is_nan());
        assert!(eval1("max(nir / 0, red)", v).is_nan());
        assert!(eval1("red + nir", [f32::NAN, 0.0, 0.0, 0.2]).is_nan());
    }

    #[test]
    fn errors_say_where() {
        let e = |t: &str| Expr::parse(t, &bands()).unwrap_err();
        let x = e("(nir - rde) / 2");
        assert_eq!(x.at, 8);
        assert!(x.message.contains("unknown band \"rde\"") && x.message.contains("red, green, blue, nir"), "{x}");
        assert_eq!(x.shown, "(nir - ^rde) / 2");
        assert_eq!(e("(nir - red").to_string(), "expected a closing ')', found the end at character 11: (nir - red^");
        assert_eq!(e("nir + * red").at, 7);
        assert_eq!(e("nir red").at, 5);
        assert!(e("nir $ red").message.contains("unexpected character '$'"));
        assert!(e("").message.contains("empty"));
        assert!(e("foo(red)").message.contains("unknown function"));
        assert!(e("sqrt(red, nir)").message.contains("one argument"));
        assert!(e("min(red)").message.contains("two or more"));
        assert!(e("1..2").message.contains("not a number"));
        assert!(e("1e99").message.contains("too large"));
        // deep nesting and huge inputs are refused, not a stack overflow
        assert!(e(&format!("{}red{}", "(".repeat(200), ")".repeat(200))).message.contains("nests more than"));
        assert!(e(&"-".repeat(100)).message.contains("nests more than"));
        assert!(e(&format!("{}1", "1+".repeat(200))).message.contains("more than 128 operations"));
        assert!(e(&"1+".repeat(300)).message.contains("longer than"));
    }
}
