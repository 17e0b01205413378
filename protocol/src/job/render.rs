//! How a result is rendered (`render` of a job): the chart kinds, their options and the
//! checks serde cannot make. Re-exported by [`super`], so the paths stay `job::RenderSpec`.

use serde::{Deserialize, Serialize};

use super::MAX_SERIES;

/// How a result is rendered. Only the rendered form leaves the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RenderSpec {
    /// A table as JSON or HTML, of at most `max_rows` rows and at most the agent's row
    /// and cell limits; a longer result is cut and says so. The agent's policy may refuse
    /// raw tables altogether.
    Table(TableSpec),
    /// One value, the first row's `column`, with a label and a number format, as JSON.
    Scalar(ScalarSpec),
    /// A bar chart as SVG: one bar group per row and one series per `y` column, or, with
    /// `series`, one bar group per distinct `x` and one series per distinct `series` value.
    /// At most 200 bar groups, and no more rows than the agent's row limit (`max_rows`):
    /// a larger result is refused, not cut.
    Bar(BarSpec),
    /// A line chart as SVG over a numeric or time `x` (one kind per column), one series
    /// per `y` column, or, with `series`, one per distinct value of that column;
    /// downsampled to `max_points` when large.
    Line(XySpec),
    /// A line chart filled down to zero, as SVG; otherwise as `line`.
    Area(XySpec),
    /// A scatter plot as SVG; otherwise as `line`.
    Scatter(XySpec),
    /// A pie chart as SVG: one slice per row, clockwise in query order. At most 10 slices:
    /// beyond that the 9 largest keep theirs and the rest are summed as "Other". Rows with
    /// a NULL size are left out; a negative size is refused.
    Pie(PieSpec),
    /// Not a rendering of rows: the connection's catalog (schemas, tables, columns,
    /// types, row estimates, which columns the agent masks) as JSON in the shape of
    /// [`crate::catalog::Catalog`]. The job carries no SQL (`sql` is empty) and no
    /// parameters; the agent reads its database's own metadata. Signed by the control
    /// plane for its schema browser only, so it is not offered to API clients. An agent
    /// older than this kind refuses such a job as malformed (`unknown variant catalog`).
    #[schemars(skip)]
    Catalog(CatalogSpec),
}

/// Most tables a catalog job may ask for.
pub const MAX_CATALOG_TABLES: u32 = 5_000;
/// Most columns (over all tables) a catalog job may ask for.
pub const MAX_CATALOG_COLUMNS: u32 = 100_000;

/// How much of the catalog to send: beyond either cap the agent stops and says
/// `truncated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    /// Tables (and views) sent at most, 1 to [`MAX_CATALOG_TABLES`].
    pub max_tables: u32,
    /// Columns sent at most over all tables, 1 to [`MAX_CATALOG_COLUMNS`]; the agent's
    /// `max_points` may lower it.
    pub max_columns: u32,
}

/// Every render kind's wire name, in a stable order.
pub const RENDER_KINDS: [&str; 7] = ["table", "scalar", "bar", "line", "area", "scatter", "pie"];

/// A single value: the first row's `column`, with a label and a number format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalarSpec {
    /// The column whose first-row value is shown.
    pub column: String,
    /// What the value is, for a human; default: the column name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Decimals shown for a number (0 to 10); default: as the database gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub decimals: Option<u8>,
    /// Text after the number (`%`, ` ms`, ` EUR`), at most 16 characters: a word or code
    /// (`EUR`, `ms`) follows after a space; with `currency`, the ISO 4217 code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub unit: Option<String>,
    /// How the number is written: `plain` (default, `43,725,380`), `compact` (`43.7M`,
    /// three significant digits unless `decimals` says), `percent` (a fraction shown as
    /// `25.3%`) or `currency` (`43,725,380.00 EUR`, with `unit` the ISO 4217 code).
    #[serde(default, skip_serializing_if = "NumberFormat::is_plain")]
    pub format: NumberFormat,
}

/// A line, area or scatter chart: `x` numeric or temporal, one series per `y` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XySpec {
    /// Column of the horizontal axis: a number, date, time or timestamp.
    pub x: String,
    /// Columns of the values (one series each, at most 10).
    #[schemars(length(min = 1, max = 10))]
    pub y: Vec<String>,
    /// Columns drawn against a second value axis on the right (dual axis), dashed and
    /// marked "(right)" in the legend; `y` and `y2` together name at most 10 columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 9))]
    pub y2: Vec<String>,
    /// Chart title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Most points drawn over all series (default 2,000); the agent's policy may lower it.
    /// Beyond it the chart is downsampled, keeping each bucket's extremes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_points: Option<u32>,
    /// Column whose distinct values are the series (long form, rows shaped `(x, series,
    /// y)`): needs exactly one `y` column and must differ from `x` and `y`. At most 10
    /// distinct values (one colour each; more is refused), in sorted order in the legend;
    /// NULL is the series "(null)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// How values are written on the value axis, in tooltips and in the legend: `plain`
    /// (default, `43,725,380`), `compact` (`43.7M` on the axis), `percent` (a fraction
    /// shown as `25.3%`) or `currency` (`43,725,380.00 EUR`, with `unit` the ISO 4217 code).
    #[serde(default, skip_serializing_if = "NumberFormat::is_plain")]
    pub format: NumberFormat,
    /// Text after each value, at most 16 characters: a word or code (`EUR`, `ms`) follows
    /// after a space, a symbol (`€`, `‰`) directly; with `currency` the ISO 4217 code
    /// (three capital letters), needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub unit: Option<String>,
    /// Decimals of values in tooltips and legends (0 to 10); default: as the database gave
    /// them (currency: 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub decimals: Option<u8>,
}

/// A pie chart: one slice per row, labelled by `label`, sized by `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PieSpec {
    /// Column of the slice names.
    pub label: String,
    /// Column of the slice sizes (numbers, none negative).
    pub value: String,
    /// Chart title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// How values are written on the value axis, in tooltips and in the legend: `plain`
    /// (default, `43,725,380`), `compact` (`43.7M` on the axis), `percent` (a fraction
    /// shown as `25.3%`) or `currency` (`43,725,380.00 EUR`, with `unit` the ISO 4217 code).
    #[serde(default, skip_serializing_if = "NumberFormat::is_plain")]
    pub format: NumberFormat,
    /// Text after each value, at most 16 characters: a word or code (`EUR`, `ms`) follows
    /// after a space, a symbol (`€`, `‰`) directly; with `currency` the ISO 4217 code
    /// (three capital letters), needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub unit: Option<String>,
    /// Decimals of values in tooltips and legends (0 to 10); default: as the database gave
    /// them (currency: 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub decimals: Option<u8>,
}

/// A table rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// JSON or HTML.
    #[serde(default)]
    pub format: TableFormat,
    /// Row cap requested by the job; the agent's policy may lower it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u32>,
}

/// A bar chart rendering.
///
/// Wide form (no `series`): one bar group per row, labelled by `x`, one series per `y`
/// column. Long form (`series` names a column, one `y`): one bar group per distinct `x`
/// value, in query order, and one series per distinct `series` value, so rows shaped
/// `(x, series, y)` need no pivot in SQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BarSpec {
    /// Column holding the category labels.
    pub x: String,
    /// Columns holding the numeric values (one series each, at most 10); with `series`,
    /// exactly one.
    #[schemars(length(min = 1, max = 10))]
    pub y: Vec<String>,
    /// Chart title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Series stacked on each other (positives up from zero, negatives down) instead of
    /// side by side; default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stacked: bool,
    /// Column whose distinct values are the series (long form); needs exactly one `y`
    /// column and must differ from `x` and `y`. At most 10 series are drawn: the 9 with the
    /// largest totals keep their own colour, the rest are summed as "Other". NULL is the
    /// series "(null)"; rows with the same `x` and `series` are added together. The legend
    /// lists the series in sorted order, "Other" last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// How values are written on the value axis, in tooltips and in the legend: `plain`
    /// (default, `43,725,380`), `compact` (`43.7M` on the axis), `percent` (a fraction
    /// shown as `25.3%`) or `currency` (`43,725,380.00 EUR`, with `unit` the ISO 4217 code).
    #[serde(default, skip_serializing_if = "NumberFormat::is_plain")]
    pub format: NumberFormat,
    /// Text after each value, at most 16 characters: a word or code (`EUR`, `ms`) follows
    /// after a space, a symbol (`€`, `‰`) directly; with `currency` the ISO 4217 code
    /// (three capital letters), needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub unit: Option<String>,
    /// Decimals of values in tooltips and legends (0 to 10); default: as the database gave
    /// them (currency: 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub decimals: Option<u8>,
}

impl RenderSpec {
    /// The kind's name on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            RenderSpec::Table(_) => "table",
            RenderSpec::Scalar(_) => "scalar",
            RenderSpec::Bar(_) => "bar",
            RenderSpec::Line(_) => "line",
            RenderSpec::Area(_) => "area",
            RenderSpec::Scatter(_) => "scatter",
            RenderSpec::Pie(_) => "pie",
            RenderSpec::Catalog(_) => "catalog",
        }
    }

    /// The columns the spec reads: `(column, role)`, role saying what it needs to be.
    pub fn columns(&self) -> Vec<(&str, ColumnRole)> {
        match self {
            RenderSpec::Table(_) | RenderSpec::Catalog(_) => Vec::new(),
            RenderSpec::Scalar(s) => vec![(s.column.as_str(), ColumnRole::Any)],
            RenderSpec::Bar(b) => {
                let mut v = vec![(b.x.as_str(), ColumnRole::Label)];
                v.extend(b.series.iter().map(|c| (c.as_str(), ColumnRole::Label)));
                v.extend(b.y.iter().map(|c| (c.as_str(), ColumnRole::Number)));
                v
            }
            RenderSpec::Line(s) | RenderSpec::Area(s) | RenderSpec::Scatter(s) => {
                let mut v = vec![(s.x.as_str(), ColumnRole::Axis)];
                v.extend(s.series.iter().map(|c| (c.as_str(), ColumnRole::Label)));
                v.extend(s.y.iter().chain(&s.y2).map(|c| (c.as_str(), ColumnRole::Number)));
                v
            }
            RenderSpec::Pie(p) => vec![(p.label.as_str(), ColumnRole::Label), (p.value.as_str(), ColumnRole::Number)],
        }
    }
}

/// How chart values are written (the `format` of bar, line, area, scatter and pie charts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NumberFormat {
    /// Thousands separated, decimals as the database gave them: `43,725,380.5`.
    #[default]
    Plain,
    /// Axis ticks with k, M, B, T: `43.7M`; tooltips and legends stay exact and grouped.
    Compact,
    /// The value is a fraction, shown times 100 with `%`: 0.253 is `25.3%`.
    Percent,
    /// Money: `43,725,380.00 EUR`, two decimals unless `decimals` says otherwise; `unit`
    /// is the ISO 4217 code.
    Currency,
}

impl NumberFormat {
    /// Whether this is the default (left out when serialised).
    pub fn is_plain(&self) -> bool {
        *self == NumberFormat::Plain
    }
}

/// What a render spec needs a column to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnRole {
    /// Anything (shown as text).
    Any,
    /// Category labels (anything, shown as text).
    Label,
    /// Numbers drawn to scale.
    Number,
    /// A numeric or temporal axis.
    Axis,
}

/// Output format of a table rendering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    /// `application/json`: columns and rows.
    #[default]
    Json,
    /// `text/html`: an escaped `<table>`.
    Html,
}

/// Most decimals a scalar may ask for.
pub const MAX_SCALAR_DECIMALS: u8 = 10;

/// Longest unit of a scalar, characters.
pub const MAX_SCALAR_UNIT: usize = 16;

impl RenderSpec {
    /// Checks what serde cannot: at least one `y` column, scalar bounds, and that a bar
    /// chart's `series` column takes exactly one `y` column and is neither `x` nor `y`.
    /// The error starts with the field (`render.series: ...`).
    pub fn check(&self) -> Result<(), String> {
        match self {
            RenderSpec::Bar(BarSpec { y, .. })
            | RenderSpec::Line(XySpec { y, .. })
            | RenderSpec::Area(XySpec { y, .. })
            | RenderSpec::Scatter(XySpec { y, .. })
                if y.is_empty() =>
            {
                Err("render.y: must name at least one column".into())
            }
            RenderSpec::Bar(BarSpec { y, .. })
            | RenderSpec::Line(XySpec { y, .. })
            | RenderSpec::Area(XySpec { y, .. })
            | RenderSpec::Scatter(XySpec { y, .. })
                if y.len() > MAX_SERIES =>
            {
                Err(format!("render.y: at most {MAX_SERIES} columns (one colour each), got {}", y.len()))
            }
            RenderSpec::Line(XySpec { y, y2, .. })
            | RenderSpec::Area(XySpec { y, y2, .. })
            | RenderSpec::Scatter(XySpec { y, y2, .. })
                if y.len() + y2.len() > MAX_SERIES =>
            {
                Err(format!(
                    "render.y2: y and y2 name at most {MAX_SERIES} columns together (one colour each), got {}",
                    y.len() + y2.len()
                ))
            }
            RenderSpec::Bar(BarSpec { x, y, series: Some(s), .. })
            | RenderSpec::Line(XySpec { x, y, series: Some(s), .. })
            | RenderSpec::Area(XySpec { x, y, series: Some(s), .. })
            | RenderSpec::Scatter(XySpec { x, y, series: Some(s), .. }) => {
                if y.len() != 1 {
                    Err(format!(
                        "render.series: takes its values from exactly one y column, but y names {}; \
                         give one y column, or leave out series to draw one series per y column",
                        y.len()
                    ))
                } else if s == x || y.contains(s) {
                    Err(format!(
                        "render.series: {s:?} is already the {} column; name a third column",
                        if s == x { "x" } else { "y" }
                    ))
                } else {
                    self.check_format()
                }
            }
            RenderSpec::Scalar(ScalarSpec { decimals: Some(d), .. }) if *d > MAX_SCALAR_DECIMALS => {
                Err(format!("render.decimals: at most {MAX_SCALAR_DECIMALS}"))
            }
            RenderSpec::Scalar(ScalarSpec { unit: Some(u), .. }) if u.chars().count() > MAX_SCALAR_UNIT => {
                Err(format!("render.unit: at most {MAX_SCALAR_UNIT} characters"))
            }
            RenderSpec::Catalog(c) if !(1..=MAX_CATALOG_TABLES).contains(&c.max_tables) => {
                Err(format!("render.max_tables: must be between 1 and {MAX_CATALOG_TABLES}"))
            }
            RenderSpec::Catalog(c) if !(1..=MAX_CATALOG_COLUMNS).contains(&c.max_columns) => {
                Err(format!("render.max_columns: must be between 1 and {MAX_CATALOG_COLUMNS}"))
            }
            _ => self.check_format(),
        }
    }

    /// A chart's `format`, `unit` and `decimals`: bounded, and a currency names its code.
    fn check_format(&self) -> Result<(), String> {
        let (format, unit, decimals) = match self {
            RenderSpec::Bar(BarSpec { format, unit, decimals, .. })
            | RenderSpec::Line(XySpec { format, unit, decimals, .. })
            | RenderSpec::Area(XySpec { format, unit, decimals, .. })
            | RenderSpec::Scatter(XySpec { format, unit, decimals, .. })
            | RenderSpec::Pie(PieSpec { format, unit, decimals, .. })
            | RenderSpec::Scalar(ScalarSpec { format, unit, decimals, .. }) => (*format, unit.as_deref(), *decimals),
            _ => return Ok(()),
        };
        if decimals.is_some_and(|d| d > MAX_SCALAR_DECIMALS) {
            return Err(format!("render.decimals: at most {MAX_SCALAR_DECIMALS}"));
        }
        if unit.is_some_and(|u| u.chars().count() > MAX_SCALAR_UNIT) {
            return Err(format!("render.unit: at most {MAX_SCALAR_UNIT} characters"));
        }
        match (format, unit) {
            (NumberFormat::Currency, Some(u)) if u.len() == 3 && u.bytes().all(|b| b.is_ascii_uppercase()) => Ok(()),
            (NumberFormat::Currency, _) => {
                Err("render.unit: a currency format needs the ISO 4217 code as its unit, such as \"EUR\"".into())
            }
            (NumberFormat::Percent, Some(_)) => {
                Err("render.unit: a percent format adds % itself; leave out unit or use format plain".into())
            }
            _ => Ok(()),
        }
    }
}
