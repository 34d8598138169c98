//! Each rule on its own, and several mistakes in one function.

use proc_macro2::{Span, TokenStream};

use super::check;
use crate::ctxt::Ctxt;
use crate::parse::{parse_args, Kind, WorkerFn};

/// The errors for `src` under `kind`, each as its message and the source text
/// it is spanned on.
fn errors(kind: Kind, src: &str) -> Vec<(String, String)> {
    let item: syn::ItemFn = syn::parse_str(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let cx = Ctxt::new();
    check(&cx, &WorkerFn::from_syn(kind, &item));
    match cx.check() {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| (e.to_string(), text_at(src, e.span())))
            .collect(),
    }
}

fn text_at(src: &str, span: Span) -> String {
    let (start, end) = (span.start(), span.end());
    assert_eq!(
        (start.line, end.line),
        (1, 1),
        "keep test sources on one line"
    );
    src.chars()
        .skip(start.column)
        .take(end.column - start.column)
        .collect()
}

/// The one error for `src`: its message and the text under it.
fn error(kind: Kind, src: &str) -> (String, String) {
    let mut errors = errors(kind, src);
    assert_eq!(errors.len(), 1, "{src}: {errors:#?}");
    errors.remove(0)
}

/// Asserts the one error of `src` is under `at` and its message contains `msg`.
#[track_caller]
fn assert_error(kind: Kind, src: &str, at: &str, msg: &str) {
    let (message, text) = error(kind, src);
    assert_eq!(text, at, "{src}: {message}");
    assert!(
        message.contains(msg),
        "{src}:\n  {message}\ndoes not contain\n  {msg}"
    );
    assert_style(&message);
}

/// rustc's style: lowercase, no final period, names the attribute.
#[track_caller]
fn assert_style(message: &str) {
    assert!(!message.ends_with('.'), "{message}");
    assert!(
        !message.starts_with(|c: char| c.is_uppercase()),
        "{message}"
    );
    assert!(message.contains("#[worker_"), "{message}");
}

fn assert_valid(kind: Kind, src: &str) {
    assert_eq!(errors(kind, src), Vec::<(String, String)>::new(), "{src}");
}

const TASK: Kind = Kind::Task;
const INIT: Kind = Kind::Init;
const EXIT: Kind = Kind::Exit;

#[test]
fn tasks_of_every_accepted_shape() {
    for src in [
        "fn f(c: &mut Classifier, row: Row) -> Label { todo!() }",
        "fn f(c: &Classifier, row: Row) -> Label { todo!() }",
        "fn f(c: &mut (u64, String)) {}",
        "fn f(c: &mut [u8; 4]) {}",
        "fn f(c: &mut Parser<'_>, line: String) {}",
        "fn f(c: &mut Parser<'static>, line: Cow<'static, str>) {}",
        "fn square(x: u64) -> u64 { x * x }",
        "fn tick() -> u64 { 1 }",
        "fn f() {}",
        "fn f(c: &mut S, a: u8, b: u8) {}",
        "fn f(c: &mut S, a: u8, b: u8, c: u8, d: u8, e: u8, g: u8) {}",
        "fn f(a: u8, b: u8, c: u8, d: u8, e: u8, g: u8) {}",
        "fn f(c: &mut S, (x, y): (u64, u64), _: u64, mut n: u64) {}",
        "fn f(x: u64) -> Result<u64, String> { Ok(x) }",
        "pub(crate) const fn f(x: u64) -> u64 { x }",
        "fn r#type(x: u64) -> u64 { x }",
    ] {
        assert_valid(TASK, src);
    }
}

#[test]
fn task_async() {
    let src = "async fn f(x: u64) {}";
    assert_error(
        TASK,
        src,
        "async",
        "`#[worker_task]` functions cannot be `async`; remove `async`",
    );
}

#[test]
fn task_unsafe() {
    let src = "unsafe fn f(x: u64) {}";
    assert_error(TASK, src, "unsafe", "cannot be `unsafe`; remove `unsafe`");
}

#[test]
fn task_extern_abi() {
    let src = r#"extern "C" fn f(x: u64) {}"#;
    assert_error(
        TASK,
        src,
        r#"extern "C""#,
        r#"cannot have an `extern` ABI; remove `extern "C"`"#,
    );
}

#[test]
fn task_generic() {
    let src = "fn f<T: Clone, const N: usize>(x: T) {}";
    assert_error(TASK, src, "<T: Clone, const N: usize>", "cannot be generic");
    assert_error(
        TASK,
        src,
        "<T: Clone, const N: usize>",
        "remove `<T: Clone, const N: usize>`",
    );
}

#[test]
fn task_where_clause() {
    let src = "fn f(x: u64) where u64: Copy {}";
    assert_error(TASK, src, "where u64: Copy", "cannot have a `where` clause");
}

#[test]
fn task_lifetime_parameter() {
    let src = "fn f<'a>(p: &mut Parser<'a>) {}";
    assert_error(
        TASK,
        src,
        "<'a>",
        "cannot have lifetime parameters; remove `<'a>` and write `'_`",
    );
}

#[test]
fn task_self_receiver() {
    let src = "fn f(&mut self, x: u64) {}";
    assert_error(TASK, src, "&mut self", "cannot take `self`");
}

#[test]
fn task_two_states() {
    let src = "fn f(a: &mut Classifier, b: &mut Other) {}";
    assert_error(
        TASK,
        src,
        "&mut Other",
        "a `#[worker_task]` takes at most one state parameter; keep everything the worker needs in the first one, `Classifier`, or take `Other` by value",
    );
}

#[test]
fn task_state_not_first() {
    let src = "fn f(x: u64, c: &Config) {}";
    assert_error(TASK, src, "&Config", "take an owned type such as `Config` instead of `&Config`, or if `Config` is the worker's state, make it the first parameter");
}

#[test]
fn task_borrowed_arguments() {
    let by_value =
        "`#[worker_task]` arguments are sent to the worker by value; take an owned type such as";
    for (src, at, owned) in [
        (
            "fn f(c: &mut S, word: &str) {}",
            "&str",
            "`String` instead of `&str`",
        ),
        ("fn f(word: &str) {}", "&str", "`String` instead of `&str`"),
        (
            "fn f(bytes: &[u8]) {}",
            "&[u8]",
            "`Vec<u8>` instead of `&[u8]`",
        ),
        (
            "fn f(p: &std::path::Path) {}",
            "&std::path::Path",
            "`PathBuf` instead of `&std::path::Path`",
        ),
        (
            "fn f(p: &OsStr) {}",
            "&OsStr",
            "`OsString` instead of `&OsStr`",
        ),
        (
            "fn f(d: &dyn Display) {}",
            "&dyn Display",
            "`String` or `Vec<u8>` instead of `&dyn Display`",
        ),
        (
            "fn f(c: &mut S, words: Vec<&str>) {}",
            "&str",
            "`String` instead of `&str`",
        ),
        (
            "fn f(c: &mut S, w: Option<&'static str>) {}",
            "&'static str",
            "`String` instead of `&'static str`",
        ),
        (
            "fn f(c: &mut S, w: Cow<'_, str>) {}",
            "'_",
            "`String` or `Vec<u8>` instead of one borrowing for `'_`",
        ),
    ] {
        assert_error(TASK, src, at, &format!("{by_value} {owned}"));
    }
}

#[test]
fn task_impl_trait_argument() {
    let src = "fn f(c: &mut S, words: impl IntoIterator<Item = String>) {}";
    assert_error(
        TASK,
        src,
        "impl IntoIterator<Item = String>",
        "arguments are sent to the worker by value; replace `impl IntoIterator<Item = String>` with a concrete type",
    );
}

#[test]
fn task_impl_trait_state() {
    let src = "fn f(c: &mut impl Classify, x: u64) {}";
    assert_error(
        TASK,
        src,
        "impl Classify",
        "the state of a `#[worker_task]` must be a concrete type",
    );
}

#[test]
fn task_too_many_arguments() {
    let src = "fn f(c: &mut S, a: u8, b: u8, d: u8, e: u8, g: u8, h: u8, i: u8, j: u8) {}";
    assert_error(
        TASK,
        src,
        "i: u8, j: u8",
        "takes at most 6 arguments after the state, found 8; group them in a struct or a tuple",
    );
    let src = "fn f(a: u8, b: u8, d: u8, e: u8, g: u8, h: u8, i: u8) {}";
    assert_error(TASK, src, "i: u8", "found 7");
}

#[test]
fn task_borrowed_or_opaque_result() {
    let src = "fn f(c: &S) -> &str { todo!() }";
    assert_error(TASK, src, "&str", "results are sent back to the driver by value; return an owned type such as `String` instead of `&str`");
    let src = "fn f(c: &S) -> impl Serialize { todo!() }";
    assert_error(
        TASK,
        src,
        "impl Serialize",
        "results are sent back to the driver by value; replace `impl Serialize` with a concrete type",
    );
}

#[test]
fn task_every_mistake_at_once() {
    let src = "async unsafe fn f<T>(&self, a: &mut S, b: &mut S, w: &str) -> impl Display {}";
    let found: Vec<String> = errors(TASK, src).into_iter().map(|(_, at)| at).collect();
    assert_eq!(
        found,
        [
            "async",
            "unsafe",
            "<T>",
            "&self",
            "&mut S",
            "&str",
            "impl Display"
        ]
    );
}

#[test]
fn attribute_arguments() {
    for kind in [TASK, INIT, EXIT] {
        let cx = Ctxt::new();
        let args: TokenStream = syn::parse_str(r#"name = "x""#).unwrap();
        parse_args(&cx, kind, &args);
        let message = cx.check().unwrap_err().to_string();
        let name = kind.name();
        assert_eq!(
            message,
            format!(
                r#"`#[{name}]` accepts no arguments, found `name = "x"`; write `#[{name}]` alone"#
            )
        );
        assert_style(&message);
    }
}

#[test]
fn inits_of_every_accepted_shape() {
    for src in [
        "fn load(a: &Config) -> State { todo!() }",
        "fn load(a: &Config, me: WorkerInfo) -> State { todo!() }",
        "fn load(a: &Config, me: pool_runtime::WorkerInfo) -> State { todo!() }",
        "fn load(a: &Config) -> Result<State, std::io::Error> { todo!() }",
        "fn load(_: &()) -> () {}",
        "fn load(a: &Arc<Table>) -> &'static Table { todo!() }",
        "fn load(a: &Path) -> Parser<'static> { todo!() }",
    ] {
        assert_valid(INIT, src);
    }
}

#[test]
fn init_no_return() {
    let src = "fn load(a: &Config) {}";
    assert_error(
        INIT,
        src,
        "fn load(a: &Config)",
        "`#[worker_init]` must return the worker's state (or `Result<State, E>`); add `-> State`",
    );
}

#[test]
fn init_missing_arguments() {
    let src = "fn load() -> State { todo!() }";
    assert_error(
        INIT,
        src,
        "()",
        "`#[worker_init]` takes the pool's arguments by reference as its first parameter, e.g. `args: &Config`",
    );
}

#[test]
fn init_mut_arguments() {
    let src = "fn load(a: &mut Config) -> State { todo!() }";
    assert_error(INIT, src, "&mut Config", "copy-on-write from the driver's memory and cannot change them; take `&Config` instead of `&mut Config`");
}

#[test]
fn init_arguments_by_value() {
    let src = "fn load(a: Config) -> State { todo!() }";
    assert_error(INIT, src, "Config", "take them by reference: `a: &Config`");
}

#[test]
fn init_info_first() {
    let src = "fn load(me: WorkerInfo) -> State { todo!() }";
    assert_error(
        INIT,
        src,
        "me: WorkerInfo",
        "takes the pool's arguments by reference first, then the `WorkerInfo`",
    );
}

#[test]
fn init_second_param_not_info() {
    let src = "fn load(a: &Config, n: usize) -> State { todo!() }";
    assert_error(
        INIT,
        src,
        "usize",
        "the second parameter of a `#[worker_init]` can only be a `WorkerInfo`",
    );
    let src = "fn load(a: &Config, me: &WorkerInfo) -> State { todo!() }";
    assert_error(
        INIT,
        src,
        "&WorkerInfo",
        "takes the `WorkerInfo` by value; write `me: WorkerInfo`",
    );
}

#[test]
fn init_too_many_params() {
    let src = "fn load(a: &Config, me: WorkerInfo, n: usize) -> State { todo!() }";
    assert_error(INIT, src, "n: usize", "takes at most two parameters");
}

#[test]
fn init_borrowed_or_opaque_state() {
    let src = "fn load(text: &String) -> Parser<'_> { todo!() }";
    assert_error(
        INIT,
        src,
        "'_",
        "the state a `#[worker_init]` returns lives as long as its worker and cannot borrow",
    );
    let src = "fn load(t: &Table) -> Result<&Table, String> { todo!() }";
    assert_error(INIT, src, "&Table", "instead of `&Table`");
    let src = "fn load(t: &Table) -> impl Classify { todo!() }";
    assert_error(INIT, src, "impl Classify", "must name the state type");
}

#[test]
fn init_lifetime_parameter() {
    let src = "fn load<'a>(text: &'a String) -> Parser<'a> { todo!() }";
    let found = errors(INIT, src);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].1, "<'a>");
    assert!(
        found[0].0.contains("cannot have lifetime parameters"),
        "{}",
        found[0].0
    );
    assert_eq!(found[1].1, "'a");
}

#[test]
fn init_shared_rules() {
    let src = "async fn load(a: &Config) -> State { todo!() }";
    assert_error(
        INIT,
        src,
        "async",
        "`#[worker_init]` functions cannot be `async`",
    );
    let src = "fn load<T>(a: &T) -> State { todo!() }";
    assert_error(
        INIT,
        src,
        "<T>",
        "`#[worker_init]` functions cannot be generic",
    );
    let src = "fn load(&self) -> State { todo!() }";
    assert_error(
        INIT,
        src,
        "&self",
        "write a free function that takes the pool's arguments",
    );
}

#[test]
fn exits_of_every_accepted_shape() {
    for src in [
        "fn report(c: Classifier) -> u64 { c.hits }",
        "fn report(c: Classifier) {}",
        "fn report(mut c: Classifier) -> Result<u64, String> { todo!() }",
        "fn report(_: Classifier) {}",
    ] {
        assert_valid(EXIT, src);
    }
}

#[test]
fn exit_by_reference() {
    let src = "fn report(c: &Classifier) -> u64 { c.hits }";
    assert_error(
        EXIT,
        src,
        "&Classifier",
        "`#[worker_exit]` consumes the state; take it by value: `c: Classifier`",
    );
    let src = "fn report(c: &mut Classifier) -> u64 { c.hits }";
    assert_error(
        EXIT,
        src,
        "&mut Classifier",
        "take it by value: `c: Classifier`",
    );
}

#[test]
fn exit_parameter_count() {
    let src = "fn report() -> u64 { 0 }";
    assert_error(
        EXIT,
        src,
        "()",
        "consumes the worker's state; take it by value as the only parameter",
    );
    let src = "fn report(c: Classifier, extra: u64, more: u64) -> u64 { 0 }";
    assert_error(
        EXIT,
        src,
        "extra: u64, more: u64",
        "takes only the state; remove the other parameters",
    );
}

#[test]
fn exit_borrowed_result() {
    let src = "fn report(c: Classifier) -> &'static str { todo!() }";
    assert_error(EXIT, src, "&'static str", "`#[worker_exit]` results are sent back to the driver by value; return an owned type such as `String`");
}

#[test]
fn exit_several_mistakes() {
    let src = "unsafe fn report<T>(c: &Classifier, x: u64) -> impl Display {}";
    let found: Vec<String> = errors(EXIT, src).into_iter().map(|(_, at)| at).collect();
    assert_eq!(
        found,
        ["unsafe", "<T>", "&Classifier", "x: u64", "impl Display"]
    );
}
