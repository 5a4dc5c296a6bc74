//! Aligned text tables for listings, like `docker ps`.

use caas_types::Timestamp;

/// A table with a header row.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rendered table, columns separated by at least three spaces.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, w) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                line.push_str(cell);
                if c + 1 < cols {
                    line.push_str(&" ".repeat(w - cell.chars().count() + 3));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A time as a table cell: to the second, `2026-11-22T06:10:01Z`; `-` for none.
pub fn time_cell(t: Option<Timestamp>) -> String {
    let Some(t) = t else {
        return "-".into();
    };
    let full = t.to_string();
    match full.split_once('.') {
        Some((secs, _)) => format!("{secs}Z"),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_to_the_second() {
        let t: Timestamp = "2026-11-22T06:10:01.123456789Z".parse().expect("a time");
        assert_eq!(time_cell(Some(t)), "2026-11-22T06:10:01Z");
        assert_eq!(time_cell(None), "-");
    }

    #[test]
    fn columns_align() {
        let mut t = Table::new(&["ID", "STATE"]);
        t.row(vec!["hello-abc".into(), "running".into()]);
        t.row(vec!["x".into(), "pending".into()]);
        assert_eq!(
            t.render(),
            "ID          STATE\nhello-abc   running\nx           pending\n"
        );
    }
}
