//! Row counting from SQL dumps as they stream past: exact by construction (the counts are of
//! the very rows in the dump) and cheap (one pass, constant memory, no buffering of lines).
//!
//! - `mariadb-dump`/`mysqldump` SQL: `CREATE TABLE \`t\`` registers a table with 0 rows; each
//!   `INSERT INTO \`t\` VALUES (...),(...);` adds its top-level tuples. Strings are
//!   single-quoted with backslash escapes (the dump's own quoting), so parentheses inside
//!   data are not counted. `USE \`db\`;` switches the database (all-databases dumps).
//! - `pg_dumpall` plain SQL: each `COPY schema.table (...) FROM stdin;` block counts its data
//!   lines up to `\.` (COPY text format escapes newlines, one row per line); `\connect db`
//!   switches the database.

use std::{
    collections::BTreeMap,
    io::{self, Read},
    sync::{Arc, Mutex},
};

/// Counts per database, then per table.
pub type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// A streaming parser that sees every byte of the dump.
pub trait DumpCounter: Send {
    /// Feeds the next bytes.
    fn feed(&mut self, data: &[u8]);
    /// The counts so far.
    fn counts(&self) -> Counts;
}

/// A reader that feeds everything it passes through to a counter, and the total byte count.
pub struct CountingReader<R> {
    inner: R,
    counter: Arc<Mutex<Box<dyn DumpCounter>>>,
    bytes: Arc<Mutex<u64>>,
}

/// Handle to read the results once the stream has ended.
#[derive(Clone)]
pub struct CountingHandle {
    counter: Arc<Mutex<Box<dyn DumpCounter>>>,
    bytes: Arc<Mutex<u64>>,
}

impl CountingHandle {
    /// Counts so far (final after EOF).
    pub fn counts(&self) -> Counts {
        self.counter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counts()
    }
    /// Bytes seen.
    pub fn bytes(&self) -> u64 {
        *self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<R: Read> CountingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, counter: Box<dyn DumpCounter>) -> (Self, CountingHandle) {
        let counter = Arc::new(Mutex::new(counter));
        let bytes = Arc::new(Mutex::new(0));
        (
            Self {
                inner,
                counter: counter.clone(),
                bytes: bytes.clone(),
            },
            CountingHandle { counter, bytes },
        )
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.counter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .feed(&buf[..n]);
            *self.bytes.lock().unwrap_or_else(|e| e.into_inner()) += n as u64;
        }
        Ok(n)
    }
}

/// Counts nothing (formats we cannot parse), only bytes.
pub struct NoCounter;

impl DumpCounter for NoCounter {
    fn feed(&mut self, _: &[u8]) {}
    fn counts(&self) -> Counts {
        Counts::new()
    }
}

/// Line prefix collection is capped: we only need the start of a line to classify it.
const PREFIX_CAP: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MyState {
    /// At or within a line prefix, collecting up to PREFIX_CAP bytes.
    Prefix,
    /// Skipping to the end of an uninteresting line.
    SkipLine,
    /// Inside the VALUES list of an INSERT.
    Values,
    /// Inside a quoted string within VALUES.
    Quoted,
    /// After a backslash inside a quoted string.
    Escaped,
}

/// The MariaDB/MySQL dump counter.
pub struct MysqlCounter {
    db: String,
    counts: Counts,
    state: MyState,
    prefix: Vec<u8>,
    table: String,
    depth: u32,
}

impl MysqlCounter {
    /// `default_db` is the database of a single-database dump (which has no `USE` lines).
    pub fn new(default_db: &str) -> Self {
        Self {
            db: default_db.to_string(),
            counts: Counts::new(),
            state: MyState::Prefix,
            prefix: Vec::new(),
            table: String::new(),
            depth: 0,
        }
    }

    fn entry(&mut self, table: &str) -> &mut u64 {
        self.counts
            .entry(self.db.clone())
            .or_default()
            .entry(table.to_string())
            .or_insert(0)
    }

    /// Decides what the line whose prefix is collected is. Returns the next state.
    fn classify(&mut self, complete_line: bool) -> MyState {
        let p = &self.prefix;
        if let Some(rest) = p.strip_prefix(b"INSERT INTO `") {
            if let Some((name, after)) = backtick_name(rest) {
                // `VALUES` is followed by the tuples on the same line (mysqldump) or on the
                // next lines, one per line (mariadb-dump 10.11).
                let values = if let Some(pos) = find(after, b" VALUES ") {
                    Some(after[pos + 8..].to_vec())
                } else if complete_line && after.ends_with(b" VALUES") {
                    Some(Vec::new())
                } else {
                    None
                };
                if let Some(values) = values {
                    self.table = name;
                    self.depth = 0;
                    self.prefix.clear();
                    self.state = MyState::Values;
                    // The prefix holds no newline, so these bytes all belong to the list.
                    for b in values {
                        self.feed_values_byte(b);
                    }
                    return self.state;
                }
            }
            // Not a data statement we know: skip it.
            return if complete_line {
                MyState::Prefix
            } else {
                MyState::SkipLine
            };
        }
        if let Some(rest) = p.strip_prefix(b"CREATE TABLE `")
            && let Some((name, _)) = backtick_name(rest)
        {
            *self.entry(&name) += 0;
        } else if let Some(rest) = p.strip_prefix(b"USE `")
            && let Some((name, _)) = backtick_name(rest)
        {
            self.db = name;
        }
        if complete_line {
            MyState::Prefix
        } else {
            MyState::SkipLine
        }
    }
}

fn backtick_name(rest: &[u8]) -> Option<(String, &[u8])> {
    // Backticks inside names are doubled.
    let mut name = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        if rest[i] == b'`' {
            if rest.get(i + 1) == Some(&b'`') {
                name.push(b'`');
                i += 2;
                continue;
            }
            return Some((String::from_utf8_lossy(&name).into_owned(), &rest[i + 1..]));
        }
        name.push(rest[i]);
        i += 1;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl DumpCounter for MysqlCounter {
    fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                MyState::Prefix => {
                    let b = data[i];
                    i += 1;
                    if b == b'\n' {
                        self.state = self.classify(true);
                        self.prefix.clear();
                        continue;
                    }
                    self.prefix.push(b);
                    let decisive = self.prefix.len() >= PREFIX_CAP
                        || (self.prefix.starts_with(b"INSERT INTO `")
                            && find(&self.prefix, b" VALUES ").is_some());
                    if decisive {
                        let next = self.classify(false);
                        self.state = next;
                        if next != MyState::Values {
                            self.prefix.clear();
                        }
                    }
                }
                MyState::SkipLine => match data[i..].iter().position(|&b| b == b'\n') {
                    Some(p) => {
                        i += p + 1;
                        self.state = MyState::Prefix;
                        self.prefix.clear();
                    }
                    None => i = data.len(),
                },
                MyState::Values | MyState::Quoted | MyState::Escaped => {
                    // Process up to the end of this chunk in the value state machine; it
                    // returns to Prefix at the end of the INSERT line.
                    while i < data.len()
                        && matches!(
                            self.state,
                            MyState::Values | MyState::Quoted | MyState::Escaped
                        )
                    {
                        self.feed_values_byte(data[i]);
                        i += 1;
                    }
                }
            }
        }
    }

    fn counts(&self) -> Counts {
        self.counts.clone()
    }
}

impl MysqlCounter {
    fn feed_values_byte(&mut self, b: u8) {
        match self.state {
            MyState::Values => match b {
                b'\'' => self.state = MyState::Quoted,
                b'(' => {
                    if self.depth == 0 {
                        let t = self.table.clone();
                        *self.entry(&t) += 1;
                    }
                    self.depth += 1;
                }
                b')' => self.depth = self.depth.saturating_sub(1),
                // The statement ends at a top-level `;`; the rest of the line is skipped.
                b';' if self.depth == 0 => {
                    self.state = MyState::SkipLine;
                    self.prefix.clear();
                }
                _ => {}
            },
            MyState::Quoted => match b {
                b'\\' => self.state = MyState::Escaped,
                b'\'' => self.state = MyState::Values,
                _ => {}
            },
            MyState::Escaped => self.state = MyState::Quoted,
            MyState::Prefix | MyState::SkipLine => {}
        }
    }
}

/// The `pg_dumpall` (plain SQL) counter.
pub struct PgPlainCounter {
    db: String,
    counts: Counts,
    line: Vec<u8>,
    line_overflow: bool,
    in_copy: Option<String>,
}

impl PgPlainCounter {
    /// `default_db` names rows seen before any `\connect`.
    pub fn new(default_db: &str) -> Self {
        Self {
            db: default_db.to_string(),
            counts: Counts::new(),
            line: Vec::new(),
            line_overflow: false,
            in_copy: None,
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let overflow = std::mem::replace(&mut self.line_overflow, false);
        if let Some(table) = &self.in_copy {
            if !overflow && line == b"\\." {
                self.in_copy = None;
            } else {
                let t = table.clone();
                *self
                    .counts
                    .entry(self.db.clone())
                    .or_default()
                    .entry(t)
                    .or_insert(0) += 1;
            }
            return;
        }
        if overflow {
            return;
        }
        if let Some(rest) = line.strip_prefix(b"COPY ")
            && line.ends_with(b" FROM stdin;")
        {
            let rest = String::from_utf8_lossy(rest);
            let name = unquote_qualified(
                rest.split_once(" (")
                    .map(|(n, _)| n)
                    .unwrap_or_else(|| rest.trim_end_matches(" FROM stdin;")),
            );
            self.counts
                .entry(self.db.clone())
                .or_default()
                .entry(name.clone())
                .or_insert(0);
            self.in_copy = Some(name);
        } else if let Some(rest) = line.strip_prefix(b"\\connect ") {
            let rest = String::from_utf8_lossy(rest).into_owned();
            self.db = connect_target(&rest);
        }
    }
}

/// `schema."Table ""x"""` → `schema.Table "x"`: the same spelling as the adapters'
/// `row_counts` (which names tables `schema.table` without quoting), so the two compare.
fn unquote_qualified(name: &str) -> String {
    let mut out = String::new();
    let mut chars = name.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                out.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            (c, _) => out.push(c),
        }
    }
    out
}

/// Database named by a `\connect` line: `\connect app`, `\connect "My DB"`,
/// `\connect -reuse-previous=on "dbname='app'"`.
fn connect_target(rest: &str) -> String {
    let rest = rest.trim();
    let arg = rest
        .strip_prefix("-reuse-previous=on ")
        .unwrap_or(rest)
        .trim();
    let unquoted = arg
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .map_or_else(|| arg.to_string(), |a| a.replace("\"\"", "\""));
    if let Some(v) = unquoted.strip_prefix("dbname=") {
        return v.trim_matches('\'').replace("\\'", "'").replace("''", "'");
    }
    unquoted
}

impl DumpCounter for PgPlainCounter {
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < PREFIX_CAP {
                self.line.push(b);
            } else {
                self.line_overflow = true;
            }
        }
    }

    fn counts(&self) -> Counts {
        self.counts.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(counter: &mut dyn DumpCounter, text: &str, chunk: usize) -> Counts {
        for c in text.as_bytes().chunks(chunk) {
            counter.feed(c);
        }
        counter.counts()
    }

    const MYSQL: &str = "-- MariaDB dump\n\
/*!40101 SET NAMES utf8mb4 */;\n\
DROP TABLE IF EXISTS `items`;\n\
CREATE TABLE `items` (\n  `id` int NOT NULL,\n  `note` text\n) ENGINE=InnoDB;\n\
INSERT INTO `items` VALUES (1,'a (tricky) value'),(2,'it''s'),(3,'back\\\\slash \\' quote ( )'),(4,NULL);\n\
INSERT INTO `items` VALUES (5,'x');\n\
CREATE TABLE `empty` (\n  `id` int\n);\n\
CREATE TABLE `we``ird` (`v` varchar(10));\n\
INSERT INTO `we``ird` VALUES ('(('),(0x28);\n\
/*!50001 CREATE TABLE `a_view` (\n  `id` tinyint NOT NULL\n) */;\n";

    #[test]
    fn mysql_counts_tuples_not_parentheses_in_strings() {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let counts = run(&mut MysqlCounter::new("app"), MYSQL, chunk);
            let app = &counts["app"];
            assert_eq!(app["items"], 5, "chunk {chunk}");
            assert_eq!(app["empty"], 0, "chunk {chunk}");
            assert_eq!(app["we`ird"], 2, "chunk {chunk}");
            assert!(
                !app.contains_key("a_view"),
                "view stand-in counted (chunk {chunk})"
            );
            assert_eq!(app.len(), 3);
        }
    }

    #[test]
    fn mariadb_one_tuple_per_line_format() {
        // mariadb-dump 10.11 writes each tuple on its own line.
        let text = "CREATE TABLE `t` (\n  `id` int,\n  `v` varchar(20)\n);\n\
LOCK TABLES `t` WRITE;\n\
INSERT INTO `t` VALUES\n(1,'a'),\n(2,'b(;'),\n(3,'multi\\nline;)');\n\
UNLOCK TABLES;\n\
INSERT INTO `t` VALUES\n(4,NULL);\n";
        for chunk in [1, 2, 5, 4096] {
            let counts = run(&mut MysqlCounter::new("d"), text, chunk);
            assert_eq!(counts["d"]["t"], 4, "chunk {chunk}");
        }
    }

    #[test]
    fn mysql_all_databases_switches_on_use() {
        let text = "CREATE DATABASE `one`;\nUSE `one`;\nCREATE TABLE `t` (`a` int);\nINSERT INTO `t` VALUES (1),(2);\n\
                    CREATE DATABASE `two`;\nUSE `two`;\nCREATE TABLE `t` (`a` int);\nINSERT INTO `t` VALUES (1);\n";
        let counts = run(&mut MysqlCounter::new(""), text, 5);
        assert_eq!(counts["one"]["t"], 2);
        assert_eq!(counts["two"]["t"], 1);
    }

    #[test]
    fn mysql_long_insert_lines() {
        let mut text = String::from("CREATE TABLE `big` (`a` text);\nINSERT INTO `big` VALUES ");
        let n = 5000;
        for i in 0..n {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("('{}')", "x(".repeat(i % 50)));
        }
        text.push_str(";\n");
        let counts = run(&mut MysqlCounter::new("d"), &text, 1000);
        assert_eq!(counts["d"]["big"], n as u64);
    }

    #[test]
    fn pg_plain_counts_copy_lines_per_database() {
        let text = "--\n-- PostgreSQL database cluster dump\n--\n\
CREATE ROLE app;\n\
\\connect template1\n\
\\connect -reuse-previous=on \"dbname='app'\"\n\
COPY public.items (id, note) FROM stdin;\n1\thello\n2\twith \\n escaped newline\n3\t\\N\n\\.\n\
COPY public.\"Empty Table\" (id) FROM stdin;\n\\.\n\
\\connect other\n\
COPY s.t (a) FROM stdin;\n1\n\\.\n";
        for chunk in [1, 3, 17, 4096] {
            let counts = run(&mut PgPlainCounter::new("postgres"), text, chunk);
            assert_eq!(counts["app"]["public.items"], 3, "chunk {chunk}");
            assert_eq!(counts["app"]["public.Empty Table"], 0, "chunk {chunk}");
            assert_eq!(counts["other"]["s.t"], 1, "chunk {chunk}");
        }
    }

    #[test]
    fn qualified_names_are_unquoted() {
        assert_eq!(unquote_qualified("public.items"), "public.items");
        assert_eq!(
            unquote_qualified("other.\"Mixed Case\""),
            "other.Mixed Case"
        );
        assert_eq!(unquote_qualified("s.\"a \"\"q\"\"\""), "s.a \"q\"");
    }

    #[test]
    fn connect_targets() {
        assert_eq!(connect_target("app"), "app");
        assert_eq!(connect_target("\"My DB\""), "My DB");
        assert_eq!(connect_target("-reuse-previous=on \"dbname='app'\""), "app");
    }

    #[test]
    fn counting_reader_passes_bytes_through() {
        let (mut r, h) = CountingReader::new(MYSQL.as_bytes(), Box::new(MysqlCounter::new("app")));
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, MYSQL.as_bytes());
        assert_eq!(h.bytes(), MYSQL.len() as u64);
        assert_eq!(h.counts()["app"]["items"], 5);
    }
}
