//! Template errors: where (template name, line, the action being executed) and what.

/// A template that does not parse or fails to execute.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The template text is not a valid template.
    #[error("template: {name}:{line}: {kind}")]
    Parse {
        /// Template name (`__alert_HighLoad`).
        name: String,
        /// 1-based line of the template text.
        line: usize,
        /// What is wrong.
        kind: ParseError,
    },
    /// Executing the template failed.
    #[error("template: {name}:{line}: executing \"{name}\" at <{action}>: {kind}")]
    Exec {
        /// Template name (`__alert_HighLoad`).
        name: String,
        /// 1-based line of the failing action.
        line: usize,
        /// The failing action's text.
        action: String,
        /// What went wrong.
        kind: ExecError,
    },
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// `{{` without `}}`.
    #[error("unclosed action")]
    UnclosedAction,
    /// `{{/*` without `*/}}`.
    #[error("unclosed comment")]
    UnclosedComment,
    /// A string literal without its closing quote.
    #[error("unterminated quoted string")]
    UnterminatedString,
    /// A backslash sequence Go does not know.
    #[error("invalid syntax in string {0}: unknown escape sequence")]
    BadEscape(String),
    /// A malformed number.
    #[error("bad number syntax: {0:?}")]
    BadNumber(String),
    /// A function that is not in the table.
    #[error("function {0:?} not defined")]
    FunctionNotDefined(String),
    /// A variable used before it is declared (or outside its scope).
    #[error("undefined variable {0:?}")]
    UndefinedVariable(String),
    /// A token that does not belong where it is.
    #[error("unexpected {token:?} in {context}")]
    Unexpected {
        /// The token.
        token: String,
        /// Where it was found (`command`, `operand`, `define clause`, ...).
        context: &'static str,
    },
    /// An action or command without a value (`{{ }}`, `{{ 1 | }}`).
    #[error("missing value for {0}")]
    MissingValue(&'static str),
    /// `(` without `)`.
    #[error("unclosed left paren")]
    UnclosedParen,
    /// `{{end}}`, `{{else}}`, `{{break}}` where no block is open.
    #[error("unexpected {{{{{0}}}}}")]
    UnexpectedKeyword(String),
    /// The text ended inside a block.
    #[error("unexpected EOF")]
    UnexpectedEof,
    /// `{{ template NAME }}`, `{{ define NAME }}`, `{{ block NAME }}` without a string name.
    #[error("expected a quoted template name in {0}")]
    TemplateName(&'static str),
    /// A template defined twice with a non-empty body.
    #[error("template: multiple definition of template {0:?}")]
    Redefined(String),
    /// More than two variables in a `range` declaration, or more than one elsewhere.
    #[error("too many declarations in {0}")]
    TooManyDeclarations(&'static str),
    /// A declaration (`$x :=`) or assignment (`$x =`) inside a parenthesized pipeline.
    #[error("the pipeline of a parenthesized argument cannot declare or assign variables")]
    DeclarationInParens,
}

/// Why executing a template failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// `.Field` of a struct that has no such field, or of a value that has no fields.
    #[error("can't evaluate field {field} in type {type_name}")]
    NoField {
        /// The field.
        field: String,
        /// The value's type.
        type_name: &'static str,
    },
    /// A function called with the wrong number of arguments.
    #[error("wrong number of args for {func}: want {want} got {got}")]
    WrongArgCount {
        /// The function.
        func: &'static str,
        /// What it takes (`1`, `at least 1`).
        want: &'static str,
        /// What it got.
        got: usize,
    },
    /// An argument of the wrong type.
    #[error("wrong type for value; expected {want}; got {got}")]
    WrongType {
        /// What the function takes.
        want: &'static str,
        /// What it got.
        got: &'static str,
    },
    /// A string that is not a number where a number is needed.
    #[error("cannot parse {0:?} as a number")]
    NotANumber(String),
    /// `eq`/`lt`/... of values Go cannot compare (`gt 1.5 1`: float64 and int).
    #[error("incompatible types for comparison")]
    IncompatibleComparison,
    /// `lt`/`gt`/... of values that have no order (maps, nil, bools).
    #[error("invalid type for comparison")]
    InvalidComparison,
    /// `eq`/`lt`/... with one argument.
    #[error("missing argument for comparison")]
    MissingComparisonArg,
    /// `range` over a value that cannot be iterated.
    #[error("range can't iterate over {0}")]
    CannotIterate(String),
    /// `len` of a value without a length.
    #[error("len of type {0}")]
    NoLength(&'static str),
    /// `index`/`slice` past the end.
    #[error("index out of range: {0}")]
    IndexOutOfRange(i64),
    /// `index` of a value that cannot be indexed, or with a key of the wrong type.
    #[error("can't index item of type {0}")]
    CannotIndex(&'static str),
    /// Arguments given to something that is not a function (`{{ $x 1 }}`).
    #[error("can't give argument to non-function {0}")]
    NotAFunction(String),
    /// A regular expression that does not compile (`match`, `reReplaceAll`).
    #[error("error parsing regexp: {0}")]
    Regex(String),
    /// The `query` function failed.
    #[error("error executing query {query:?}: {source}")]
    Query {
        /// The PromQL text.
        query: String,
        /// Why (the engine's own error: parse error, timeout, ...).
        source: crate::eval::Error,
    },
    /// `query` where no querier is available.
    #[error("query is not available here")]
    NoQuerier,
    /// `first` of an empty query result.
    #[error("first() called on vector with no elements")]
    FirstOfEmpty,
    /// `parseDuration` of a malformed duration.
    #[error("not a valid duration string: {0:?}")]
    InvalidDuration(String),
    /// `toTime` of a value that is no time.
    #[error("{0} cannot be represented as a time")]
    NotATime(String),
    /// `{{ template "x" }}` of a template that is not defined.
    #[error("no template {0:?} associated with template")]
    NoTemplate(String),
    /// Templates calling each other too deep (a template that calls itself).
    #[error("exceeded maximum template depth ({0})")]
    TooDeep(usize),
    /// The output grew past the limit.
    #[error("template output exceeds {0} bytes")]
    TooLong(usize),
    /// The template ran more steps than the limit (a runaway `range`).
    #[error("template execution exceeds {0} steps")]
    TooManySteps(usize),
    /// A function's own failure, named after it.
    #[error("error calling {func}: {source}")]
    Call {
        /// The function.
        func: &'static str,
        /// Why.
        source: Box<ExecError>,
    },
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
