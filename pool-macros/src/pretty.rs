//! Tokens printed the way a person writes them, for error messages.
//!
//! `TokenStream`'s own `Display` puts a space between every token
//! (`Vec < u8 >`, `& mut State`); messages quote the user's types back to
//! them, so they should read like the source.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;

/// `&mut Vec<u8>`, `(a, b): (u64, u64)`, `impl Iterator<Item = u8> + Send`.
pub fn tokens<T: ToTokens + ?Sized>(t: &T) -> String {
    let mut out = String::new();
    let mut prev = Atom::Start;
    write(&mut out, t.to_token_stream(), &mut prev);
    out
}

/// What came last, which decides the space before the next token.
#[derive(Clone, Copy, PartialEq)]
enum Atom {
    Start,
    /// An identifier, a literal or a lifetime.
    Word,
    /// A keyword that a group after it is spaced from: `mut [u8]`, `dyn (A)`.
    Keyword,
    /// Punctuation followed by a space: `,` `;` `:` `=` `+` `->` `=>`.
    SpacedPunct,
    /// Punctuation glued to what follows: `&` `<` `>` `::` `'` `*` `?` `!`.
    Punct,
    Open,
}

fn write(out: &mut String, tokens: TokenStream, prev: &mut Atom) {
    let mut iter = tokens.into_iter().peekable();
    while let Some(tt) = iter.next() {
        match tt {
            TokenTree::Ident(i) => {
                if matches!(*prev, Atom::Word | Atom::Keyword | Atom::SpacedPunct) {
                    out.push(' ');
                }
                let word = i.to_string();
                *prev = match word.as_str() {
                    "mut" | "const" | "dyn" | "impl" | "ref" | "as" | "in" => Atom::Keyword,
                    _ => Atom::Word,
                };
                out.push_str(&word);
            }
            TokenTree::Literal(l) => {
                if matches!(*prev, Atom::Word | Atom::Keyword | Atom::SpacedPunct) {
                    out.push(' ');
                }
                out.push_str(&l.to_string());
                *prev = Atom::Word;
            }
            TokenTree::Punct(p) => {
                // Glue joint punctuation into one operator (`::`, `->`, `=>`).
                let mut op = p.as_char().to_string();
                let mut spacing = p.spacing();
                while spacing == Spacing::Joint && p.as_char() != '\'' {
                    match iter.peek() {
                        Some(TokenTree::Punct(next)) if next.as_char() != '\'' => {
                            op.push(next.as_char());
                            spacing = next.spacing();
                            iter.next();
                        }
                        _ => break,
                    }
                }
                match op.as_str() {
                    "'" => {
                        // A lifetime: `'` glued to the identifier after it.
                        if matches!(*prev, Atom::Word | Atom::Keyword | Atom::SpacedPunct) {
                            out.push(' ');
                        }
                        out.push('\'');
                        if let Some(TokenTree::Ident(i)) = iter.peek() {
                            out.push_str(&i.to_string());
                            iter.next();
                        }
                        *prev = Atom::Word;
                    }
                    "," | ";" | ":" => {
                        out.push_str(&op);
                        *prev = Atom::SpacedPunct;
                    }
                    "=" | "+" | "->" | "=>" => {
                        if *prev != Atom::Start {
                            out.push(' ');
                        }
                        out.push_str(&op);
                        *prev = Atom::SpacedPunct;
                    }
                    _ => {
                        if *prev == Atom::SpacedPunct {
                            out.push(' ');
                        }
                        out.push_str(&op);
                        *prev = Atom::Punct;
                    }
                }
            }
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::None => ("", ""),
                };
                if matches!(*prev, Atom::SpacedPunct | Atom::Keyword)
                    || (*prev == Atom::Word && g.delimiter() == Delimiter::Brace)
                {
                    out.push(' ');
                }
                out.push_str(open);
                if !open.is_empty() {
                    *prev = Atom::Open;
                }
                write(out, g.stream(), prev);
                out.push_str(close);
                if !close.is_empty() {
                    // `(u64, u64) -> u8`: a closing delimiter reads like a word.
                    *prev = Atom::Word;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tokens;

    fn ty(s: &str) -> String {
        tokens(&syn::parse_str::<syn::Type>(s).unwrap())
    }

    #[test]
    fn types_read_like_source() {
        for s in [
            "&mut State",
            "&mut [u8]",
            "&'static str",
            "&'a mut Parser<'a>",
            "Vec<u8>",
            "&[u8]",
            "[u8; 4]",
            "::std::path::PathBuf",
            "(u64, String)",
            "Result<State, std::io::Error>",
            "impl Iterator<Item = u64> + Send",
            "&dyn Fn(u8) -> u8",
            "Box<dyn Fn(&str) -> String + 'static>",
            "*const u8",
            "fn(u64) -> u64",
        ] {
            assert_eq!(ty(s), s);
        }
    }

    #[test]
    fn patterns_and_params_read_like_source() {
        let arg: syn::FnArg = syn::parse_str("(x, y): (u64, u64)").unwrap();
        assert_eq!(tokens(&arg), "(x, y): (u64, u64)");
        let arg: syn::FnArg = syn::parse_str("mut c: &mut Classifier").unwrap();
        assert_eq!(tokens(&arg), "mut c: &mut Classifier");
    }
}
