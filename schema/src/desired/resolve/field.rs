//! Where in a file a problem is: a resource or one of its fields, such as
//! `clusters[3].backends[0].address`, kept in parts and spelled out only when reported.

use std::fmt;

/// Where groups of fields sit inside a resource.
#[derive(Debug, Clone, Copy)]
pub(super) enum Within {
    /// `clusters[i].backends[j]`
    Backend(usize),
    /// `clusters[i].health_check`
    HealthCheck,
}

/// A resource or one of its fields, such as `clusters[3].backends[0].address`. Kept in parts
/// and spelled out only when an error or a warning needs it: every resource has several
/// fields, and most loads report nothing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    list: &'static str,
    index: usize,
    within: Option<Within>,
    name: Option<&'static str>,
}

impl Field {
    /// `list[index]`: one resource of a file.
    pub(super) fn item(list: &'static str, index: usize) -> Field {
        Field {
            list,
            index,
            within: None,
            name: None,
        }
    }

    /// A group of fields inside this resource.
    pub(super) fn within(self, within: Within) -> Field {
        Field {
            within: Some(within),
            ..self
        }
    }

    /// A named field of this resource (or group).
    pub(super) fn field(self, name: &'static str) -> Field {
        Field {
            name: Some(name),
            ..self
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)?;
        match self.within {
            Some(Within::Backend(j)) => write!(f, ".backends[{j}]")?,
            Some(Within::HealthCheck) => f.write_str(".health_check")?,
            None => {}
        }
        if let Some(name) = self.name {
            write!(f, ".{name}")?;
        }
        Ok(())
    }
}
