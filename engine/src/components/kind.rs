//! The three sections a component can be declared in.

/// Which section a component is declared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `[sources.ID]`
    Source,
    /// `[transforms.ID]`
    Transform,
    /// `[sinks.ID]`
    Sink,
}

impl Kind {
    /// The section's name.
    pub fn section(self) -> &'static str {
        match self {
            Kind::Source => "sources",
            Kind::Transform => "transforms",
            Kind::Sink => "sinks",
        }
    }

    /// One component of this section: "source", "transform" or "sink".
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Sink => "sink",
        }
    }

    /// The component types this section accepts.
    pub fn types(self) -> Vec<&'static str> {
        match self {
            Kind::Source => super::type_names(Kind::Source),
            Kind::Transform => super::type_names(Kind::Transform),
            Kind::Sink => super::type_names(Kind::Sink),
        }
    }

    /// Every section, in file order.
    pub(crate) const ALL: [Kind; 3] = [Kind::Source, Kind::Transform, Kind::Sink];
}
