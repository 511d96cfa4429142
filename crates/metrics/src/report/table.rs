//! A plain table rendered two ways: GitHub markdown (report.md) and aligned text (the terminal).

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// Headers plus rows of already formatted cells.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub headers: Vec<String>,
    pub align: Vec<Align>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&str, Align)]) -> Self {
        Table {
            headers: headers.iter().map(|(h, _)| h.to_string()).collect(),
            align: headers.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in w.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        w
    }

    fn pad(cell: &str, width: usize, align: Align) -> String {
        let n = cell.chars().count();
        let fill = " ".repeat(width.saturating_sub(n));
        match align {
            Align::Left => format!("{cell}{fill}"),
            Align::Right => format!("{fill}{cell}"),
        }
    }

    /// GitHub-flavoured markdown; `|` inside cells is escaped.
    pub fn to_markdown(&self) -> String {
        let w = self.widths();
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells
                .iter()
                .zip(&w)
                .zip(&self.align)
                .map(|((c, &w), &a)| Self::pad(&c.replace('|', "\\|"), w, a))
                .collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut out = line(&self.headers);
        let rule: Vec<String> = w
            .iter()
            .zip(&self.align)
            .map(|(&w, a)| match a {
                Align::Left => format!(":{}", "-".repeat(w.max(3) - 1)),
                Align::Right => format!("{}:", "-".repeat(w.max(3) - 1)),
            })
            .collect();
        out.push_str(&format!("| {} |\n", rule.join(" | ")));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }

    /// Aligned columns with a rule under the header, for a terminal.
    pub fn to_text(&self) -> String {
        let w = self.widths();
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells
                .iter()
                .zip(&w)
                .zip(&self.align)
                .map(|((c, &w), &a)| Self::pad(c, w, a))
                .collect();
            format!("  {}\n", cells.join("  ").trim_end())
        };
        let mut out = line(&self.headers);
        out.push_str(&format!(
            "  {}\n",
            w.iter()
                .map(|&w| "-".repeat(w))
                .collect::<Vec<_>>()
                .join("  ")
        ));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_ways() {
        let mut t = Table::new(&[("name", Align::Left), ("value", Align::Right)]);
        t.push(vec!["a|b".into(), "1.5".into()]);
        t.push(vec!["ü".into(), "10".into()]);
        assert_eq!(
            t.to_markdown(),
            "| name | value |\n| :--- | ----: |\n| a\\|b |   1.5 |\n| ü    |    10 |\n"
        );
        assert_eq!(
            t.to_text(),
            "  name  value\n  ----  -----\n  a|b     1.5\n  ü        10\n"
        );
    }
}
