//! Enums whose values are written as fixed lower-case names in the configuration.

/// Declares such an enum with `as_str`, `from_name`, `ALL` and `Display`, so that every
/// choice key reads, prints and reports its allowed values the same way.
macro_rules! choice_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every value, in the order the documentation lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name written in the configuration.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// The value written as `name` (ASCII case-insensitive), if there is one.
            pub fn from_name(name: &str) -> Option<$name> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str().eq_ignore_ascii_case(name))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl crate::read::Choice for $name {
            fn all() -> &'static [$name] {
                Self::ALL
            }

            fn name(self) -> &'static str {
                self.as_str()
            }
        }
    };
}
