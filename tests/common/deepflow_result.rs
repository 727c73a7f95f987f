//! A reader for the DeepFlow agent's `.result` files (Rust `Debug` style records).
//!
//! It parses the generic shape `Name { field: value, ... }`, `Name(value, ...)`, lists,
//! quoted strings and bare atoms, so any protocol's lines can be read, not just HTTP's.

use std::collections::BTreeMap;

/// A value of a `Debug`-printed record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `Name { a: x, b: y }` (name may be empty for anonymous braces).
    Struct(String, BTreeMap<String, Value>),
    /// `Name(x, y)`.
    Tuple(String, Vec<Value>),
    /// `[x, y]`.
    List(Vec<Value>),
    /// `"text"`.
    Str(String),
    /// A bare word or number (`None`, `Ok`, `200`, `V1_1`).
    Atom(String),
}

impl Value {
    /// A field of a struct.
    pub fn get(&self, k: &str) -> Option<&Value> {
        match self {
            Value::Struct(_, m) => m.get(k),
            _ => None,
        }
    }

    /// Unwraps `Some(x)` to `x`; `None` to `None`; other values stay.
    pub fn some(&self) -> Option<&Value> {
        match self {
            Value::Atom(a) if a == "None" => None,
            Value::Tuple(n, v) if n == "Some" && v.len() == 1 => Some(&v[0]),
            other => Some(other),
        }
    }

    /// The text of a string or atom.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Atom(s) => Some(s),
            _ => None,
        }
    }

    /// `field.some().text()` for optional fields.
    pub fn opt_text(&self, k: &str) -> Option<String> {
        self.get(k)?.some()?.text().map(str::to_string)
    }

    /// An optional integer field.
    pub fn opt_int(&self, k: &str) -> Option<i64> {
        self.opt_text(k)?.parse().ok()
    }
}

/// One line: the record and the trailing `is_xxx: bool` verdict.
#[derive(Debug, Clone)]
pub struct Line {
    /// The parsed record.
    pub record: Value,
    /// The inference verdict printed after it.
    pub verdict: Option<bool>,
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn word(&mut self) -> String {
        self.ws();
        let st = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || b"_.-+".contains(&self.s[self.i]))
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[st..self.i]).into_owned()
    }
    fn string(&mut self) -> Result<String, String> {
        // Called at the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        while self.i < self.s.len() {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("escape at end")?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'0' => out.push(0),
                        b'u' => {
                            // \u{XXXX}
                            let close = self.s[self.i..]
                                .iter()
                                .position(|&b| b == b'}')
                                .ok_or("bad \\u")?;
                            let hex = String::from_utf8_lossy(&self.s[self.i + 1..self.i + close])
                                .into_owned();
                            self.i += close + 1;
                            let ch = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .unwrap_or('\u{fffd}');
                            let mut b = [0; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
        Err("unterminated string".into())
    }
    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                while !self.eat(b']') {
                    v.push(self.value()?);
                    self.eat(b',');
                }
                Ok(Value::List(v))
            }
            Some(b'{') => self.fields(String::new()),
            Some(_) => {
                let w = self.word();
                if w.is_empty() {
                    return Err(format!("unexpected byte at {}", self.i));
                }
                match self.peek() {
                    Some(b'{') => self.fields(w),
                    Some(b'(') => {
                        self.i += 1;
                        let mut v = Vec::new();
                        while !self.eat(b')') {
                            v.push(self.value()?);
                            self.eat(b',');
                        }
                        Ok(Value::Tuple(w, v))
                    }
                    _ => Ok(Value::Atom(w)),
                }
            }
            None => Err("unexpected end".into()),
        }
    }
    fn fields(&mut self, name: String) -> Result<Value, String> {
        self.eat(b'{');
        let mut m = BTreeMap::new();
        while !self.eat(b'}') {
            let k = self.word();
            if k.is_empty() || !self.eat(b':') {
                return Err(format!("expected field name at {}", self.i));
            }
            let v = self.value()?;
            m.insert(k, v);
            self.eat(b',');
        }
        Ok(Value::Struct(name, m))
    }
}

/// Parses one line of a `.result` file.
pub fn parse_line(line: &str) -> Result<Line, String> {
    let mut p = P {
        s: line.as_bytes(),
        i: 0,
    };
    let record = p.value()?;
    let rest = String::from_utf8_lossy(&p.s[p.i..]).into_owned();
    let verdict = rest.split_whitespace().last().and_then(|w| w.parse().ok());
    Ok(Line { record, verdict })
}

/// Parses every non-empty line.
pub fn parse_file(text: &str) -> Result<Vec<Line>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect()
}
