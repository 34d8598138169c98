//! The message of a user's `Serialize` error, which postcard drops
//! (`ser::Error::custom` gives "Serde Serialization Error" whatever it was
//! told). Only on that error path, the value is serialized again into
//! [`Catcher`], a serializer that writes nothing and keeps the message of
//! the first error raised. A `Serialize` impl fails the same way whatever
//! it writes to, so the message found is the one the user's code gave.

use std::fmt;

use serde::ser::{self, Serialize};

/// The message `value`'s `Serialize` gives when it fails, if it does.
pub(crate) fn message_of<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    value
        .serialize(Catcher)
        .err()
        .map(|Caught(message)| message)
}

/// A serializer that writes nothing, for [`message_of`].
struct Catcher;

/// The error raised inside [`Catcher`]: the user's message.
#[derive(Debug)]
struct Caught(String);

impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Caught {}

impl ser::Error for Caught {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Caught(message.to_string())
    }
}

type Done = Result<(), Caught>;

macro_rules! accept {
    ($($method:ident($($ty:ty),*);)*) => {
        $(fn $method(self, $(_: $ty),*) -> Done { Ok(()) })*
    };
}

impl ser::Serializer for Catcher {
    type Ok = ();
    type Error = Caught;
    type SerializeSeq = Catcher;
    type SerializeTuple = Catcher;
    type SerializeTupleStruct = Catcher;
    type SerializeTupleVariant = Catcher;
    type SerializeMap = Catcher;
    type SerializeStruct = Catcher;
    type SerializeStructVariant = Catcher;

    accept! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Done {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Done {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Done {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Catcher, Caught> {
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Catcher, Caught> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Catcher, Caught> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Catcher, Caught> {
        Ok(self)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Catcher, Caught> {
        Ok(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Catcher, Caught> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Catcher, Caught> {
        Ok(self)
    }
}

/// The compound serializers: every element, key, value and field goes
/// through [`Catcher`] too.
macro_rules! compound {
    ($($trait:ident { $($method:ident($($name:ident: $ty:ty),*);)* })*) => {
        $(
            impl ser::$trait for Catcher {
                type Ok = ();
                type Error = Caught;
                $(
                    fn $method<T: Serialize + ?Sized>(&mut self, $($name: $ty,)* value: &T) -> Done {
                        $(let _ = $name;)*
                        value.serialize(Catcher)
                    }
                )*
                fn end(self) -> Done {
                    Ok(())
                }
            }
        )*
    };
}

compound! {
    SerializeSeq { serialize_element(); }
    SerializeTuple { serialize_element(); }
    SerializeTupleStruct { serialize_field(); }
    SerializeTupleVariant { serialize_field(); }
    SerializeMap { serialize_key(); serialize_value(); }
    SerializeStruct { serialize_field(key: &'static str); }
    SerializeStructVariant { serialize_field(key: &'static str); }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Refuses(&'static str);

    impl Serialize for Refuses {
        fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom(format_args!("refused: {}", self.0)))
        }
    }

    #[test]
    fn the_first_message_raised_anywhere_in_the_value_is_found() {
        assert_eq!(message_of(&Refuses("top")).as_deref(), Some("refused: top"));
        let nested = (1u8, vec![Some(Refuses("deep"))], "x");
        assert_eq!(message_of(&nested).as_deref(), Some("refused: deep"));
        let mut map = std::collections::BTreeMap::new();
        map.insert(3u32, Refuses("in a map"));
        assert_eq!(message_of(&map).as_deref(), Some("refused: in a map"));
        assert_eq!(message_of(&(1u64, "fine", vec![2u8])), None);
    }
}
