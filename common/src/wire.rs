//! One pattern for the enums whose values travel on the wire or sit in
//! files: protocol message kinds, alert codes and revocation reasons.
//!
//! Each variant's code and name are written once, in the enum's
//! definition; the conversions in both directions are generated from that
//! one list, so a code cannot be added to one direction and forgotten in
//! the other.

/// Defines a fieldless enum whose variants each carry a wire code and a
/// name, and generates:
/// - `ALL`: every variant, in definition order;
/// - `code()`: the variant's code;
/// - `from_code()`: the variant with that code, if any;
/// - `name()`: the variant's name (for narration, files and flags);
/// - `Display`, printing the name.
///
/// With a trailing `; unknown Other => "text"`, the enum also gets a
/// variant holding any code it does not know, and `from_code` answers that
/// instead of `None`.
///
/// ```ignore
/// wire_enum! {
///     /// Doc.
///     pub enum Colour: u8 {
///         /// Doc.
///         Red = 1 => "red",
///     }
/// }
/// ```
macro_rules! wire_enum {
    // With a fallback variant for codes this side does not know: they are
    // kept as numbers rather than refused, so `from_code` cannot fail.
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal ),+ ,
            ;
            $(#[$ometa:meta])* unknown $other:ident => $otext:literal $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            $(#[$ometa])* $other($repr),
        }

        impl $name {
            /// Every known variant, in definition order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code this variant has on the wire.
            pub const fn code(self) -> $repr {
                match self {
                    $($name::$variant => $code,)+
                    $name::$other(n) => n,
                }
            }

            /// The variant with `code`; an unknown code is kept as is.
            pub const fn from_code(code: $repr) -> Self {
                match code {
                    $($code => $name::$variant,)+
                    n => $name::$other(n),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    $($name::$variant => f.write_str($text),)+
                    $name::$other(n) => write!(f, "{} {}", $otext, n),
                }
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in definition order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code this variant has on the wire.
            pub const fn code(self) -> $repr {
                match self {
                    $($name::$variant => $code),+
                }
            }

            /// The variant with `code`, if there is one.
            pub const fn from_code(code: $repr) -> Option<Self> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The variant's name, as narration, files and flags spell it.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(crate) use wire_enum;

#[cfg(test)]
mod tests {
    wire_enum! {
        /// A test enum.
        enum Sample: u16 {
            /// First.
            A = 1 => "a",
            B = 7 => "bee",
        }
    }

    wire_enum! {
        enum Open: u16 {
            X = 3 => "x",
            ;
            unknown Other => "code",
        }
    }

    #[test]
    fn unknown_codes_are_kept() {
        assert_eq!(Open::ALL, &[Open::X]);
        assert_eq!(Open::from_code(3), Open::X);
        assert_eq!(Open::from_code(9), Open::Other(9));
        assert_eq!(Open::Other(9).code(), 9);
        assert_eq!(Open::Other(9).to_string(), "code 9");
        assert_eq!(Open::X.to_string(), "x");
    }

    #[test]
    fn codes_and_names_round_trip() {
        for v in Sample::ALL {
            assert_eq!(Sample::from_code(v.code()), Some(*v));
        }
        assert_eq!(Sample::from_code(2), None);
        assert_eq!(Sample::B.to_string(), "bee");
        assert_eq!(Sample::A.code(), 1);
    }
}
